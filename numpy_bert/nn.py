"""A minimal module system for NumPy, shaped like torch.nn so the two backends read alike.

A ``Parameter`` holds ``data`` and, after a backward pass, ``grad``. A ``Module``
registers parameters and sub-modules in assignment order, which gives every
parameter a dotted name (``encoder.layer.0.attention.self.query.weight``) exactly
as PyTorch and transformers name it.

Each module's ``forward`` keeps what its ``backward`` needs (its cache), and its
``backward(grad_output)`` returns the gradient with respect to its input while
*adding* parameter gradients into ``Parameter.grad``. Adding, not assigning, is
what makes tied weights right: the word-embedding matrix used by the embedding
lookup and by the MLM decoder receives the sum of both contributions.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .checkpoint import check_state_dict


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
