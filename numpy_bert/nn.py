"""A minimal module system for NumPy, shaped like torch.nn so the two backends read alike.

A ``Parameter`` holds ``data`` and, after a backward pass, ``grad``. A ``Module``
registers parameters and sub-modules in assignment order, which gives every
parameter a dotted name (``encoder.layer.0.attention.self.query.weight``) exactly
as PyTorch and transformers name it.

What ``backward`` means, everywhere in numpy_bert (this is the one place it is defined):

* ``forward(x)`` keeps what the backward pass needs on ``self`` (its cache).
* ``backward(dy)`` takes dL/d(output) and returns dL/d(input), while *adding* each
  parameter's gradient into ``Parameter.grad``. A forward with two array inputs
  (an add-and-norm block's ``hidden_states`` and ``input_tensor``) gets a backward
  that returns a pair, in the same order; a forward whose input is integer ids (an
  embedding table, a whole model) gets one that returns ``None``: ids have no gradient.
  Each such signature says so.
* A model with a loss (``BertForPreTraining``, the task heads) has ``backward()``
  without an argument: the backward pass of its last loss, dL/dL = 1. It is numpy's
  ``loss.backward()``.
* Gradients add up until ``zero_grad()``, as in PyTorch; ``gradients()`` returns them
  as ``{parameter name: array}``. So one training step reads
  ``model.zero_grad(); model(**batch); model.backward(); grads = model.gradients()``.

Adding, not assigning, is what makes tied weights right: the word-embedding matrix
used by the embedding lookup and by the MLM decoder receives the sum of both uses.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class Parameter:
    __slots__ = ("data", "grad")

    def __init__(self, data: np.ndarray):
        self.data = data
        self.grad: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    def accumulate_grad(self, grad: np.ndarray) -> None:
        self.grad = grad if self.grad is None else self.grad + grad


class Module:
    training: bool = True

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)

    def __setattr__(self, name: str, value: object) -> None:
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ---- traversal ----------------------------------------------------------

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        """Each parameter once, under the first name it is reached by (as in PyTorch)."""
        seen: set[int] = set()
        for module_name, module in self.named_modules():
            for name, param in module._parameters.items():
                if id(param) not in seen:
                    seen.add(id(param))
                    yield (f"{module_name}.{name}" if module_name else name), param

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def num_parameters(self) -> int:
        return sum(p.data.size for p in self.parameters())

    # ---- modes and gradients ------------------------------------------------

    def train(self, mode: bool = True) -> Module:
        for _, module in self.named_modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def to(self, dtype) -> Module:
        """Cast every parameter to ``dtype`` (float32 or float64), as ``torch.nn.Module.to`` does.

        Modules are built in float32; a model sets its dtype once, for the whole tree.
        """
        dtype = np.dtype(dtype)
        if dtype not in SUPPORTED_DTYPES:
            raise ValueError(f"dtype must be float32 or float64, got {dtype}")
        for param in self.parameters():
            if param.data.dtype.kind == "f":  # int8 weights (numpy_bert/quantization.py) stay int8
                param.data = param.data.astype(dtype, copy=False)
        return self

    def gradients(self) -> dict[str, np.ndarray]:
        """{name: gradient} after a backward pass; zeros for parameters the loss did not reach."""
        return {name: (np.zeros_like(p.data) if p.grad is None else p.grad)
                for name, p in self.named_parameters()}

    # ---- weights --------------------------------------------------------------

    def state_dict(self) -> dict[str, np.ndarray]:
        return {name: p.data for name, p in self.named_parameters()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Copy arrays in by name; ValueError listing every missing, unexpected or mis-shaped tensor."""
        params = dict(self.named_parameters())
        check_state_dict(state, {n: p.shape for n, p in params.items()}, np.shape)
        for name, param in params.items():
            param.data = np.array(state[name], dtype=param.data.dtype, copy=True)


class ModuleList(Module):
    """Numbered children (``layer.0``, ``layer.1``, ...) as in torch.nn.ModuleList."""

    def __init__(self, modules: list[Module]):
        super().__init__()
        for i, module in enumerate(modules):
            setattr(self, str(i), module)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __len__(self) -> int:
        return len(self._modules)

    def __getitem__(self, index: int) -> Module:
        return self._modules[str(index)]


def check_state_dict(state: Mapping[str, object], model_shapes: Mapping[str, tuple[int, ...]], shape_of) -> None:
    """Strict load_state_dict: the exact names and shapes, or a ValueError listing every difference.

    ``shape_of`` reads a value's shape (``np.shape``), so torch_bert checks its tensors with it too.
    """
    problems = [f"missing tensor {n!r}" for n in model_shapes if n not in state]
    problems += [f"unexpected tensor {n!r}" for n in state if n not in model_shapes]
    problems += [
        f"tensor {n!r} has shape {tuple(shape_of(v))}, expected {tuple(model_shapes[n])}"
        for n, v in state.items()
        if n in model_shapes and tuple(shape_of(v)) != tuple(model_shapes[n])
    ]
    if problems:
        raise ValueError("state dict does not fit the model:\n  " + "\n  ".join(problems))
