"""The benchmark harness: a smoke run (`python -m benchmarks --smoke`) into a temporary folder.

Checks the JSON schema cell by cell, the FLOP convention, that skipped cells say why, that the
deployment peers (ONNX Runtime, the int8 models) ran for inference only, that the workers ran
without the OpenBLAS kernel variables and recorded the BLAS they loaded, that the plots exist,
that the README block is rendered from the JSON, and that the block in benchmarks/README.md is
what the committed JSON renders. No timing is asserted: these are benchmarks, not timed tests.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks import matrix
from benchmarks.backends import BACKENDS, INFERENCE_PHASES, benchmark_config, phases_of
from benchmarks.flops import Shape, attention_crossover, step_flops
from benchmarks.machine import BLAS_KERNEL_VARIABLES, gpu_peak
from benchmarks.report import render_readme
from benchmarks.run import worker_environment
from benchmarks.worker import blas_in_use, run_cell

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUMBER = (int, float)
PEERS = ["numpy_int8", "torch_int8", "onnxruntime", "onnxruntime_int8"]


def harmless_blas_kernel_env() -> dict[str, str]:
    """Both OpenBLAS kernel variables, set to the kernel OpenBLAS picks here anyway (an unknown name would
    make it complain) and an L2 size: only the parent process, which times nothing, may see them."""
    import numpy  # noqa: F401  (loads the BLAS threadpoolctl reports)
    from threadpoolctl import threadpool_info

    kernel = next((i["architecture"] for i in threadpool_info() if i.get("architecture")), "Haswell")
    return {"OPENBLAS_CORETYPE": kernel, "OPENBLAS_L2_SIZE": "1048576"}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One smoke run for all the tests here. One thread: multi-threaded BLAS on a machine busy with
    other work (a test run often is) can be many times slower, and the schema does not depend on it."""
    out = tmp_path_factory.mktemp("benchmarks")
    command = [sys.executable, "-m", "benchmarks", "--smoke", "--threads", "1", "--out", str(out), "--label", "smoke"]
    proc = subprocess.run(command, env={**os.environ, **harmless_blas_kernel_env()},
                          cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    with open(out / "smoke" / "results.json", encoding="utf-8") as f:
        return json.load(f), out, proc.stdout


def test_top_level_schema(smoke):
    doc, _, _ = smoke
    for key, kind in {"schema_version": int, "label": str, "mode": str, "created": str, "command": str,
                      "machine": dict, "settings": dict, "peaks": dict, "flop_convention": str, "cells": list,
                      "tokenizer": list, "headline": dict, "plots": list}.items():
        assert isinstance(doc[key], kind), key
    assert doc["label"] == "smoke" and doc["mode"] == "smoke"
    machine = doc["machine"]
    for key in ("cpu_model", "threads", "numpy", "blas", "torch", "transformers", "onnxruntime",
                "torch_quantized_engine", "platform", "blas_env", "blas_in_use"):
        assert key in machine, key
    assert machine["threads"] >= 1 and machine["torch_threads"] == machine["threads"]
    assert all(v == str(machine["threads"]) for k, v in machine["thread_env"].items())
    assert isinstance(doc["peaks"]["cpu_gflops"], float) and doc["peaks"]["cpu_gflops"] > 0


CELL_KEYS = {"id": str, "backend": str, "title": str, "implementation": str, "device": str, "config": str,
             "phase": str, "batch_size": int, "seq_len": int, "sweeps": list, "dtype": str, "attention": str,
             "compiled": bool, "mlm_positions": str, "labelled_positions": int, "status": str, "flops": dict}


def test_every_cell(smoke):
    doc, _, _ = smoke
    ids = [c["id"] for c in doc["cells"]]
    assert len(ids) == len(set(ids))
    assert {c["backend"] for c in doc["cells"]} >= {"numpy", "numpy_fast", "torch_bert", "transformers_sdpa",
                                                    "torch_bert_cuda", "transformers_cuda", *PEERS}
    for c in doc["cells"]:
        for key, kind in CELL_KEYS.items():
            assert isinstance(c[key], kind), (c["id"], key)
        assert c["status"] in ("ok", "skipped"), (c["id"], c["status"], c.get("reason"), c.get("traceback"))
        assert c["phase"] in ("train", "infer", "fill_mask") and c["device"] in ("cpu", "cuda")
        flops = c["flops"]
        assert isinstance(flops["model"], int) and flops["model"] > 0
        assert isinstance(flops["executed"], int) and flops["executed"] >= flops["model"]
        if c["status"] == "skipped":
            assert isinstance(c["reason"], str) and c["reason"], c["id"]
            assert c["timing"] is None and c["tokens_per_s"] is None
            continue
        assert c["reason"] is None
        t = c["timing"]
        for key in ("median_s", "q1_s", "q3_s", "min_s", "max_s"):
            assert isinstance(t[key], float) and t[key] > 0, (c["id"], key)
        assert t["min_s"] <= t["q1_s"] <= t["median_s"] <= t["q3_s"] <= t["max_s"]
        assert isinstance(t["repeats"], int) and t["repeats"] == len(t["times_s"]) >= 1
        for key in ("ms_per_step", "tokens_per_s", "gflops_per_s", "executed_gflops_per_s"):
            assert isinstance(c[key], float) and c[key] > 0, (c["id"], key)
        assert isinstance(c["params"], int) and c["params"] > 0
        assert isinstance(c["peak_memory_bytes"], int) and c["peak_memory_bytes"] >= 0
        assert isinstance(c["memory_method"], str)
        if c["mfu"] is not None:
            assert 0 < c["mfu"] <= 1, (c["id"], c["mfu"])
            assert isinstance(c["mfu_basis"], str)
        if c["device"] == "cpu":
            assert c["threads"] == doc["machine"]["threads"]
            # int8 products have no float32 peak to be a fraction of
            assert (c["mfu"] is None) == (c["dtype"] == "int8-dynamic"), c["id"]


def test_cuda_cells_skipped_with_reason_without_a_gpu(smoke):
    doc, _, stdout = smoke
    cuda = [c for c in doc["cells"] if c["device"] == "cuda"]
    assert cuda
    if not doc["machine"]["cuda_available"]:
        assert all(c["status"] == "skipped" and "no CUDA device" in c["reason"] for c in cuda)
        assert "no CUDA device" in stdout


def test_transformers_and_onnxruntime_execute_every_position_in_training_and_fill_mask(smoke):
    doc, _, _ = smoke
    for c in doc["cells"]:
        if c["phase"] in ("train", "fill_mask"):
            gathered = "labelled" if c["phase"] == "train" else "masked"
            expected = "all" if c["implementation"] in ("transformers", "onnxruntime") else gathered
            assert c["mlm_positions"] == expected
            assert (c["flops"]["executed"] > c["flops"]["model"]) == (expected == "all")
            if c["phase"] == "fill_mask":
                assert c["batch_size"] == 1 and c["labelled_positions"] == 1
    assert any(c["phase"] == "fill_mask" and c["status"] == "ok" for c in doc["cells"])


def test_deployment_peers_run_inference_only(smoke):
    doc, _, _ = smoke
    for backend in PEERS:
        cells = [c for c in doc["cells"] if c["backend"] == backend]
        assert {c["phase"] for c in cells} == set(INFERENCE_PHASES), backend
        assert all("deploy" in c["sweeps"] for c in cells)
        for c in cells:
            assert c["status"] == "ok", (c["id"], c["reason"], c.get("traceback"))
            assert c["timing"]["median_s"] > 0 and c["ms_per_step"] > 0 and c["tokens_per_s"] > 0
    # the deploy sweep puts the float32 backends next to them, at the same shapes
    shapes = {(c["phase"], c["batch_size"], c["seq_len"]) for c in doc["cells"] if c["backend"] == "onnxruntime"}
    numpy = {(c["phase"], c["batch_size"], c["seq_len"]) for c in doc["cells"] if c["backend"] == "numpy"
             and "deploy" in c["sweeps"]}
    assert shapes == numpy and len(shapes) == 3


def test_workers_ran_without_the_blas_kernel_variables_and_recorded_the_blas(smoke):
    doc, _, _ = smoke
    machine = doc["machine"]
    assert machine["blas_env"] == {"unset_in_workers": harmless_blas_kernel_env(), "kept": {}}
    assert set(machine["blas_in_use"]) == {"numpy", "onnx", "torch"}
    for group, found in machine["blas_in_use"].items():
        assert found["kernel_env"] == dict.fromkeys(BLAS_KERNEL_VARIABLES), group  # the worker saw neither
        assert found["reason"] is None and found["libraries"], group
        blas = [lib for lib in found["libraries"] if lib["user_api"] == "blas"]
        assert blas, group
        for lib in blas:
            assert {"internal_api", "version", "num_threads", "architecture", "file"} <= set(lib)
            assert lib["num_threads"] == machine["threads"] and "/" not in lib["file"]


def test_worker_environment_unsets_the_blas_kernel_variables_unless_kept():
    parent = {"OPENBLAS_CORETYPE": "Prescott", "OPENBLAS_L2_SIZE": "262144", "OMP_NUM_THREADS": "2"}
    env, unset = worker_environment(parent, keep_blas_env=False)
    assert unset == {"OPENBLAS_CORETYPE": "Prescott", "OPENBLAS_L2_SIZE": "262144"}
    assert "OPENBLAS_CORETYPE" not in env and "OPENBLAS_L2_SIZE" not in env and env["OMP_NUM_THREADS"] == "2"
    assert env["PYTHONPATH"].split(os.pathsep)[0] == REPO
    assert parent["OPENBLAS_CORETYPE"] == "Prescott"  # the parent's own environment is left alone
    env, unset = worker_environment(parent, keep_blas_env=True)
    assert unset == {} and env["OPENBLAS_CORETYPE"] == "Prescott"


def test_blas_in_use_without_threadpoolctl(monkeypatch):
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # makes `import threadpoolctl` raise ImportError
    found = blas_in_use()
    assert found["libraries"] is None and "threadpoolctl not importable" in found["reason"]


def test_a_cell_whose_library_is_missing_is_skipped_with_the_reason():
    cell = {"backend": "onnxruntime", "config": "tiny", "phase": "infer", "batch_size": 1, "seq_len": 8}
    assert run_cell(cell, {}, 1, {"onnxruntime": "onnxruntime not installed"}) == {
        "status": "skipped", "reason": "onnxruntime not installed"}


def test_tokenizer_figures(smoke):
    """With the test dependencies installed (as in CI) both tokenizers run and give the same ids."""
    doc, _, _ = smoke
    rows = {r["backend"]: r for r in doc["tokenizer"]}
    assert set(rows) == {"numpy_bert", "transformers_fast"}
    for r in rows.values():
        assert r["status"] == "ok", r["reason"]
        assert r["mb_per_s"] > 0 and r["bytes"] > 0 and r["ids_match"] is True


def test_plots_exist(smoke):
    doc, out, _ = smoke
    assert {"seq_len.png", "speedup.png", "memory.png", "deploy.png"} <= set(doc["plots"])
    for name in doc["plots"]:
        path = out / "smoke" / name
        assert path.is_file() and path.stat().st_size > 1000, name


def test_readme_block_comes_from_the_json(smoke):
    doc, out, _ = smoke
    block = render_readme(str(out), "smoke")
    assert block.startswith("<!-- BEGIN benchmarks") and block.rstrip().endswith("<!-- END benchmarks -->")
    assert "| config | backend |" in block and "seq_len.png" in block
    cell = next(c for c in doc["cells"] if c["status"] == "ok" and c["backend"] == "numpy_fast"
                and "headline" in c["sweeps"] and c["phase"] == "train")
    assert f"{cell['tokens_per_s']:,.0f}" in block
    reference = next(c for c in doc["cells"] if c["status"] == "ok" and c["backend"] == "numpy"
                     and c["config"] == cell["config"] and c["phase"] == "train" and "headline" in c["sweeps"])
    assert f"{reference['ms_per_step'] / cell['ms_per_step']:.2f}x" in block
    peers = block[block.index("**Deployment peers**"):]
    onnx = next(c for c in doc["cells"] if c["backend"] == "onnxruntime_int8" and c["phase"] == "fill_mask")
    assert f"| {onnx['title']} |" in peers and f"{onnx['ms_per_step']:.2f}" in peers
    kernel = next(lib["architecture"] for lib in doc["machine"]["blas_in_use"]["numpy"]["libraries"]
                  if lib["user_api"] == "blas")
    assert f"kernel {kernel}" in block and "Unset in the workers: `OPENBLAS_CORETYPE=" in block


def test_committed_block_is_rendered_from_the_committed_json():
    with open(os.path.join(REPO, "benchmarks", "README.md"), encoding="utf-8") as f:
        text = f.read()
    end_marker = "<!-- END benchmarks -->"
    committed = text[text.index("<!-- BEGIN benchmarks"):text.index(end_marker) + len(end_marker)]
    assert committed == render_readme(os.path.join(REPO, "benchmarks", "results")), \
        "the block in benchmarks/README.md is stale: replace it with the output of `python -m benchmarks --readme`"


def test_flop_convention_by_hand():
    import numpy_bert

    shape = Shape.of(numpy_bert.BertConfig.from_preset("mini"))
    L, C, V, B, T, P = 4, 256, 30522, 32, 128, 32 * 19
    n_enc = L * (4 * C * C + 2 * C * 4 * C)
    assert shape.encoder_matmul_params == n_enc == 3_145_728
    forward = B * T * (2 * n_enc + 4 * L * T * C) + 2 * B * (C * C + 2 * C) + 2 * P * (C * C + V * C)
    assert step_flops(shape, "train", B, T, P) == {"model": 3 * forward, "executed": 3 * forward}
    every = B * T * (2 * n_enc + 4 * L * T * C) + 2 * B * (C * C + 2 * C) + 2 * B * T * (C * C + V * C)
    assert step_flops(shape, "infer", B, T, P) == {"model": every, "executed": every}
    assert step_flops(shape, "train", B, T, P, all_positions_in_training=True)["executed"] == 3 * every
    assert attention_crossover(shape) == 6 * C
    one_mask = T * (2 * n_enc + 4 * L * T * C) + 2 * (C * C + 2 * C) + 2 * 1 * (C * C + V * C)
    assert step_flops(shape, "fill_mask", 1, T, 1) == {"model": one_mask, "executed": one_mask}


def test_matrix_modes():
    for mode in matrix.MODES.values():
        cells = matrix.build_cells(mode, compile_=True)
        ids = [c["id"] for c in cells]
        assert len(ids) == len(set(ids)) and all(c["sweeps"] for c in cells)
        assert any(c["backend"] == "torch_bert_cuda_compile" for c in cells)
    quick = matrix.build_cells(matrix.MODES["quick"], gpu=False)
    assert any(c["id"] == "train/mini/numpy_fast/b32/t128" for c in quick)
    assert all(c["backend"] in matrix.CPU_LEAN for c in quick if c["sweeps"] != ["deploy"])
    deploy = {c["id"] for c in quick if "deploy" in c["sweeps"]}
    assert len(deploy) == 2 * len(matrix.DEPLOY) * 3  # mini and MiniLM; latency, throughput, fill-mask
    assert {"infer/minilm/onnxruntime_int8/b1/t16", "infer/minilm/torch_int8/b32/t128",
            "fill_mask/mini/numpy_int8/b1/t16"} <= deploy


def test_inference_engines_get_no_training_cells_in_any_sweep():
    everything = dataclasses.replace(matrix.MODES["smoke"], cpu_backends=[b for b in BACKENDS
                                                                          if BACKENDS[b]["device"] == "cpu"])
    cells = matrix.build_cells(everything, gpu=False)
    assert {c["backend"] for c in cells} >= set(PEERS)
    assert all(c["phase"] in phases_of(c["backend"]) for c in cells)
    assert not any(c["phase"] == "train" and c["backend"] in PEERS for c in cells)


def test_minilm_config_has_the_shape_of_all_minilm_l6_v2():
    config = benchmark_config("minilm")
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads, config.vocab_size) == \
        (6, 384, 12, 30522)


@pytest.mark.parametrize("name, tflops", [("NVIDIA H100 80GB HBM3", 989.4), ("NVIDIA H100 PCIe", 756.0),
                                          ("NVIDIA H100 NVL", 835.0), ("NVIDIA H200 NVL", 835.0),
                                          ("NVIDIA L40", 181.05), ("NVIDIA L40S", 362.05), ("NVIDIA L4", 121.0),
                                          ("Tesla T4", None)])
def test_gpu_peak_takes_the_most_specific_datasheet_entry(name, tflops):
    assert gpu_peak(name)[0] == tflops


def test_finetune_from_random_copy_differs_only_in_its_weights(tmp_path):
    import numpy as np

    from benchmarks.finetune_from import random_copy
    from numpy_bert import BertConfig, BertForMaskedLM, BertTokenizer

    folder = random_copy(tmp_path / "random")
    assert BertConfig.from_pretrained(folder).to_dict() == BertConfig.from_pretrained("python-docs").to_dict()
    assert BertTokenizer.from_pretrained(folder).vocab == BertTokenizer.from_pretrained("python-docs").vocab
    fresh, shipped = (BertForMaskedLM.from_pretrained(f).state_dict() for f in (folder, "python-docs"))
    assert all(not np.allclose(fresh[name], shipped[name]) for name in shipped if name.endswith(".weight")
               and "LayerNorm" not in name)


def test_finetune_from_plot(tmp_path):
    from benchmarks.finetune_from import plot

    runs = [{"task": "classify", "model": m, "accuracy": a, "macro_f1": a - 0.05}
            for m, a in (("python-docs", 0.6), ("random", 0.3))]
    assert plot({"epochs": 3, "runs": runs}, tmp_path / "chart.png").read_bytes().startswith(b"\x89PNG")


# ---- benchmarks.family: the BERT family side by side ------------------------------------------------


def test_family_doc_table_is_the_committed_json():
    """docs/family.md's table is benchmarks/results/family.json rendered (regenerate both together)."""
    from benchmarks.family import PATH, table

    doc = (Path(__file__).resolve().parent.parent / "docs" / "family.md").read_text()
    assert table(json.loads(PATH.read_text())) in doc, "re-render: python -m benchmarks.family --plot"


def test_family_flops_per_token_are_flops_py_without_the_pooler():
    """The per-token count is flops.py's forward count of one sequence, less the per-sequence pooler and
    NSP terms, which a per-token figure leaves out."""
    from benchmarks.family import MLM_FRACTION, SEQ_LEN, encoder_flops_per_token, mlm_head_flops_per_token
    from benchmarks.flops import forward_flops

    config = {"hidden_size": 128, "num_hidden_layers": 2, "intermediate_size": 512, "vocab_size": 8192}
    per_sequence = forward_flops(Shape(2, 128, 512, 8192), 1, SEQ_LEN, MLM_FRACTION * SEQ_LEN)
    ours = SEQ_LEN * (encoder_flops_per_token(config) + mlm_head_flops_per_token(config))
    assert ours == pytest.approx(per_sequence - 2 * (128 * 128 + 2 * 128), rel=1e-12)
    factorised = {**config, "embedding_size": 64}  # ALBERT: the E -> H projection, and an E-wide decoder
    assert encoder_flops_per_token(factorised) - encoder_flops_per_token(config) == 2 * 64 * 128


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16), classes=st.integers(2, 6))
def test_family_linear_probe_finds_a_separable_task_and_not_a_random_one(seed, classes):
    from benchmarks.family import linear_probe

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, 16)) * 3
    labels = rng.integers(0, classes, 400)
    features = centres[labels] + rng.standard_normal((400, 16))
    assert linear_probe(features[:300], labels[:300], features[300:], labels[300:]) >= 0.9
    shuffled = rng.permutation(labels)  # labels that the features know nothing about
    assert linear_probe(features[:300], shuffled[:300], features[300:], shuffled[300:]) <= 1 / classes + 0.2


@pytest.mark.parametrize("budgets", ["abc", "0,300", "300,,900", ""])
def test_family_refuses_bad_budgets_in_one_line(budgets, capsys):
    from benchmarks.family import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--budgets", budgets])
    assert exit_info.value.code == 2
    assert "error: argument --budgets" in capsys.readouterr().err.splitlines()[-1]
