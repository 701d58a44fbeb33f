"""``python -m benchmarks --profile``: where the NumPy training step spends its time.

Profiles one training step of BERT-mini (batch 32, sequence 128, float32, dropout on,
MLM at 15% of positions) for the readable model and for numpy_bert.fast, with
pyinstrument when it is installed (``pip install pyinstrument``; it is not a
dependency) and cProfile otherwise, and times both: 5 steps each, alternating between
the two models so that a change in the machine's load hits both alike; wall-clock and
process CPU time (all threads) are reported. The profiles are written next to the
results as profile_<model>.txt.
"""

from __future__ import annotations

import os
import statistics
import time


def _step_function(fast: bool):
    import numpy_bert
    from numpy_bert.optim import build_optimizer

    from .backends import make_batch

    config = numpy_bert.BertConfig.from_preset("mini")
    if fast:
        from numpy_bert.fast import FastBertForPreTraining as Model
    else:
        Model = numpy_bert.BertForPreTraining
    model = Model(config, seed=0)
    optimizer = build_optimizer(model, lr=1e-4)
    b = make_batch(config.vocab_size, config.type_vocab_size, 32, 128)

    def step():
        model(b["input_ids"], b["attention_mask"], b["token_type_ids"], b["labels"], b["next_sentence_label"],
              labelled_positions_only=True)
        model.backward()
        optimizer.step()
        optimizer.zero_grad()

    return step


def profile_numpy_step(out_dir: str) -> int:
    os.makedirs(out_dir, exist_ok=True)
    try:
        import pyinstrument
    except ImportError:
        pyinstrument = None
        print("pyinstrument is not installed (pip install pyinstrument); using cProfile")
    steps = {"readable": _step_function(False), "fast": _step_function(True)}
    wall: dict[str, list[float]] = {name: [] for name in steps}
    cpu: dict[str, list[float]] = {name: [] for name in steps}
    for step in steps.values():
        step()  # warm-up
    for _ in range(5):
        for name, step in steps.items():
            w0, c0 = time.perf_counter(), time.process_time()
            step()
            wall[name].append(time.perf_counter() - w0)
            cpu[name].append(time.process_time() - c0)
    medians = {name: statistics.median(times) for name, times in wall.items()}
    cpu_medians = {name: statistics.median(times) for name, times in cpu.items()}
    for name, step in steps.items():
        if pyinstrument is not None:
            profiler = pyinstrument.Profiler(interval=0.0005)
            profiler.start()
            step()
            profiler.stop()
            text = profiler.output_text(unicode=False, color=False)
        else:
            import cProfile
            import io
            import pstats

            profiler = cProfile.Profile()
            profiler.enable()
            step()
            profiler.disable()
            stream = io.StringIO()
            pstats.Stats(profiler, stream=stream).sort_stats("tottime").print_stats(30)
            text = stream.getvalue()
        path = os.path.join(out_dir, f"profile_{name}.txt")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"== {name}: median of 5 steps {medians[name] * 1000:.0f} ms wall, {cpu_medians[name] * 1000:.0f} ms "
              f"CPU ({path})\n{text}")
    print(f"training step, BERT-mini, batch 32 x 128, float32, median of 5 alternating steps: readable "
          f"{medians['readable'] * 1000:.0f} ms, fast {medians['fast'] * 1000:.0f} ms wall "
          f"({medians['readable'] / medians['fast']:.2f}x); CPU time {cpu_medians['readable'] * 1000:.0f} ms and "
          f"{cpu_medians['fast'] * 1000:.0f} ms ({cpu_medians['readable'] / cpu_medians['fast']:.2f}x)")
    return 0
