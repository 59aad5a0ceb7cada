"""Does every rule train out of the box? A two-tower classifier on a synthetic task.

The task needs both modalities: label ``y = (a + b) mod 3`` with ``a`` only in
the image features and ``b`` only in the text features (each a class centroid
plus Gaussian noise), so one modality alone is at chance (1/3). Each model is
two small MLP towers giving ``D = 64`` embeddings ``v`` and ``t``, a fusion rule
with its default spec but the per-sample ``input_norm="none"`` (``build(kind, dim=64,
input_norm="none")``; ``benchmarks/towers.py`` measures the defaults with encoders
trained from scratch), and a one-hidden-layer head;
the baseline concatenates ``[v; t]`` into the same head. Adam (lr 2e-3), batch
128, ``--steps`` steps; test accuracy of the eval-mode model (argmax routing).
``energy_aware_adaptive`` trains with its energy loss: in PyTorch added to the
task loss as the guide shows, in Keras through the layer's losses (its default).

    python benchmarks/train_bench.py            # every rule, torch + keras (jax), 3 seeds
    python benchmarks/train_bench.py --fast     # a smoke run: few steps, 1 seed, 4 rules

The full run writes ``docs/assets/train_bench.json``, the table of
``docs/training.md`` (between its ``train-bench`` markers) and
``docs/assets/train_bench.png``. ``--scenario`` picks a transformation of the
test split from ``SCENARIOS`` (default ``"full"``: both modalities present);
another scenario (e.g. a modality missing for part of the test samples) is one
more entry there.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "jax")

ROOT = Path(__file__).resolve().parents[1]
RULES = (
    "simple",
    "concat_mlp",
    "gated",
    "film",
    "modality_dropout",
    "transformer_concat",
    "cross_attention",
    "shomr",
    "energy_aware_adaptive",
)
BASELINE = "baseline"
FAST_RULES = ("gated", "transformer_concat", "shomr", "energy_aware_adaptive")
#: The original's behaviour, one spec option away from each default that serves training.
ORIGINAL = (
    "transformer_concat:modality_embedding_std=1.0",
    "shomr:straight_through=false",
    "energy_aware_adaptive:straight_through=false",
)
CLASSES = 3
CHANCE = 1.0 / CLASSES


@dataclass(frozen=True)
class Task:
    """Train and test splits: features ``x_v`` ``(N, F)``, ``x_t`` ``(N, F)``, labels ``(N,)``."""

    x_v: np.ndarray
    x_t: np.ndarray
    y: np.ndarray
    test_x_v: np.ndarray
    test_x_t: np.ndarray
    test_y: np.ndarray


def make_task(seed: int, n_train: int = 6400, n_test: int = 2000, features: int = 32,
              noise: float = 1.9) -> Task:
    """The synthetic task of seed ``seed``: ``y = (a + b) mod 3``, ``a`` in ``x_v``, ``b`` in ``x_t``."""
    rng = np.random.default_rng(seed)
    centroids_v = rng.normal(size=(CLASSES, features))
    centroids_t = rng.normal(size=(CLASSES, features))

    def split(n):
        a = rng.integers(0, CLASSES, n)
        b = rng.integers(0, CLASSES, n)
        x_v = centroids_v[a] + noise * rng.normal(size=(n, features))
        x_t = centroids_t[b] + noise * rng.normal(size=(n, features))
        return x_v.astype(np.float32), x_t.astype(np.float32), ((a + b) % CLASSES).astype(np.int64)

    return Task(*split(n_train), *split(n_test))


def _full(task: Task, rng: np.random.Generator) -> Task:
    """Both modalities present for every test sample."""
    return task


#: name -> transformation of the task's test split (the train split is never changed).
SCENARIOS: dict[str, Callable[[Task, np.random.Generator], Task]] = {"full": _full}


def rule_fields(rule: str) -> tuple[str, dict]:
    """``"shomr:straight_through=false,fallback=true"`` -> ``("shomr", {...})`` (JSON values)."""
    kind, _, rest = rule.partition(":")
    fields = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        fields[key] = json.loads(value)
    return kind, fields


# --- PyTorch ------------------------------------------------------------------------


def train_torch(kind: str, task: Task, seed: int, *, dim: int, steps: int, batch: int,
                lr: float, input_norm: str = "none") -> dict:
    import torch
    from torch import nn

    from fusion_spec.backends.torch import build

    name, fields = rule_fields(kind)
    fields = {"input_norm": input_norm, **fields}

    torch.set_num_threads(1)  # tiny matrices: threads only contend on a shared machine
    torch.manual_seed(seed)
    features = task.x_v.shape[1]

    def tower():
        return nn.Sequential(nn.Linear(features, dim), nn.GELU(), nn.Linear(dim, dim))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.tower_v, self.tower_t = tower(), tower()
            self.fusion = None if kind == BASELINE else build(name, dim=dim, **fields)
            width = 2 * dim if kind == BASELINE else dim
            self.head = nn.Sequential(nn.Linear(width, dim), nn.GELU(), nn.Linear(dim, CLASSES))

        def forward(self, x_v, x_t):
            v, t = self.tower_v(x_v), self.tower_t(x_t)
            if self.fusion is None:
                return self.head(torch.cat([v, t], dim=-1)), {}
            fused, aux = self.fusion(v, t, return_aux=True)
            return self.head(fused), aux

    model = Model()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x_v, x_t, y = (torch.from_numpy(a) for a in (task.x_v, task.x_t, task.y))
    gen = torch.Generator().manual_seed(seed)
    model.train()
    start = time.perf_counter()
    energy = []
    for _ in range(steps):
        idx = torch.randint(0, len(y), (batch,), generator=gen)
        logits, aux = model(x_v[idx], x_t[idx])
        loss = nn.functional.cross_entropy(logits, y[idx])
        if "energy_loss" in aux:
            loss = loss + aux["energy_loss"]
            energy.append(float(aux["expected_energy"].detach().mean()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        tv, tt = torch.from_numpy(task.test_x_v), torch.from_numpy(task.test_x_t)
        logits, aux = model(tv, tt)
        acc = float((logits.argmax(-1).numpy() == task.test_y).mean())
    result = {"accuracy": acc, "train_seconds": seconds}
    if "route" in aux:
        result["route_share"] = np.bincount(aux["route"].numpy(), minlength=3).tolist()
    if energy:
        result["train_expected_energy_mJ_last"] = float(np.mean(energy[-20:]))
    return result


# --- Keras --------------------------------------------------------------------------


def train_keras(kind: str, task: Task, seed: int, *, dim: int, steps: int, batch: int,
                lr: float, input_norm: str = "none") -> dict:
    import keras

    from fusion_spec.backends.keras import build

    name, fields = rule_fields(kind)
    fields = {"input_norm": input_norm, **fields}

    keras.utils.set_random_seed(seed)
    features = task.x_v.shape[1]

    def tower(name):
        return keras.Sequential(
            [keras.layers.Dense(dim, activation="gelu"), keras.layers.Dense(dim)], name=name
        )

    in_v = keras.Input((features,), name="x_v")
    in_t = keras.Input((features,), name="x_t")
    v, t = tower("tower_v")(in_v), tower("tower_t")(in_t)
    if kind == BASELINE:
        fused = keras.layers.Concatenate()([v, t])
    else:
        fusion = build(name, seed=seed, dim=dim, **fields)
        fused = fusion([v, t])
    hidden = keras.layers.Dense(dim, activation="gelu")(fused)
    logits = keras.layers.Dense(CLASSES)(hidden)
    model = keras.Model([in_v, in_t], logits)
    model.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    per_epoch = len(task.y) // batch
    epochs = max(1, round(steps / per_epoch))
    start = time.perf_counter()
    model.fit(
        [task.x_v, task.x_t], task.y, batch_size=batch, epochs=epochs,
        steps_per_epoch=min(per_epoch, steps), shuffle=True, verbose=0,
    )
    seconds = time.perf_counter() - start
    pred = model.predict([task.test_x_v, task.test_x_t], batch_size=1000, verbose=0)
    acc = float((np.argmax(pred, -1) == task.test_y).mean())
    return {"accuracy": acc, "train_seconds": seconds, "steps": epochs * min(per_epoch, steps)}


TRAINERS = {"torch": train_torch, "keras-jax": train_keras}


# --- the run ------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    rules: tuple[str, ...] = RULES
    frameworks: tuple[str, ...] = ("torch", "keras-jax")
    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = 300
    batch: int = 128
    lr: float = 2e-3
    dim: int = 64
    scenario: str = "full"
    #: every rule's input_norm: "none", the per-sample function (the features are fixed
    #: class centroids plus noise; the default "batch" is measured by towers.py)
    input_norm: str = "none"


FAST = Config(rules=FAST_RULES, seeds=(0,), steps=150)


def run(config: Config, log=print) -> dict:
    """Train every (framework, rule, seed) of ``config``; the results as a JSON-able dict."""
    results = []
    for seed in config.seeds:
        task = SCENARIOS[config.scenario](make_task(seed), np.random.default_rng(1000 + seed))
        for framework in config.frameworks:
            for kind in (BASELINE, *config.rules):
                r = TRAINERS[framework](
                    kind, task, seed, dim=config.dim, steps=config.steps, batch=config.batch,
                    lr=config.lr, input_norm=config.input_norm,
                )
                results.append({"framework": framework, "rule": kind, "seed": seed, **r})
                log(f"{framework:10s} {kind:22s} seed {seed}: accuracy {r['accuracy']:.3f} "
                    f"({r['train_seconds']:.1f} s)")
    return {
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(config).items()},
        "chance": CHANCE,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared), {platform.python_version()}",
        "results": results,
    }


def ratios(report: dict) -> dict[tuple[str, str], list[float]]:
    """(framework, rule) -> accuracy / baseline accuracy of the same framework and seed, per seed."""
    base = {(r["framework"], r["seed"]): r["accuracy"] for r in report["results"]
            if r["rule"] == BASELINE}
    out: dict[tuple[str, str], list[float]] = {}
    for r in report["results"]:
        if r["rule"] != BASELINE:
            out.setdefault((r["framework"], r["rule"]), []).append(
                r["accuracy"] / base[(r["framework"], r["seed"])]
            )
    return out


def markdown(report: dict) -> str:
    """The table: per rule and framework, accuracy per seed and the worst ratio to the baseline."""
    cfg = report["config"]
    rows = {}
    for r in report["results"]:
        rows.setdefault((r["rule"], r["framework"]), []).append(r["accuracy"])
    ratio = ratios(report)
    lines = [
        f"Test accuracy, {cfg['steps']} steps, seeds {cfg['seeds']}, scenario "
        f"`{cfg['scenario']}`; chance (one modality) {report['chance']:.2f}. "
        "Ratio: the worst seed's accuracy over the baseline's of the same seed.",
        "",
        "| rule | framework | accuracy per seed | mean | worst ratio to baseline |",
        "|---|---|---|---|---|",
    ]
    for kind in (BASELINE, *cfg["rules"]):
        for fw in cfg["frameworks"]:
            accs = rows.get((kind, fw))
            if not accs:
                continue
            worst = "" if kind == BASELINE else f"{min(ratio[(fw, kind)]):.2f}"
            name = "concatenate + MLP (baseline)" if kind == BASELINE else f"`{kind}`"
            lines.append(
                f"| {name} | {fw} | {', '.join(f'{a:.3f}' for a in accs)} | "
                f"{np.mean(accs):.3f} | {worst} |"
            )
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = report["config"]
    kinds = [BASELINE, *cfg["rules"]]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / len(cfg["frameworks"])
    for j, fw in enumerate(cfg["frameworks"]):
        for i, kind in enumerate(kinds):
            accs = [r["accuracy"] for r in report["results"]
                    if r["rule"] == kind and r["framework"] == fw]
            x = i + (j - (len(cfg["frameworks"]) - 1) / 2) * width
            ax.bar(x, np.mean(accs), width, color=f"C{j}", label=fw if i == 0 else None)
            ax.scatter([x] * len(accs), accs, color="black", s=8, zorder=3)
    ax.axhline(report["chance"], color="grey", linestyle=":", label="one modality (chance)")
    ax.set_xticks(range(len(kinds)), ["baseline", *cfg["rules"]], rotation=30, ha="right")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def write_docs(report: dict, docs: Path) -> None:
    """The JSON, the plot and the table between the markers of ``docs/training.md``."""
    assets = docs / "assets"
    (assets / "train_bench.json").write_text(json.dumps(report, indent=1) + "\n")
    plot(report, assets / "train_bench.png")
    page = docs / "training.md"
    text = page.read_text()
    begin, end = "<!-- train-bench: begin -->", "<!-- train-bench: end -->"
    head, rest = text.split(begin)
    _, tail = rest.split(end)
    page.write_text(f"{head}{begin}\n{markdown(report)}{end}{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fast", action="store_true", help="few steps, 1 seed, 4 rules")
    parser.add_argument("--rules", nargs="+",
                        help="kinds, or kind:field=value,... for a non-default spec")
    parser.add_argument("--original", action="store_true",
                        help="also the original's options (ORIGINAL), for comparison")
    parser.add_argument("--frameworks", nargs="+", choices=tuple(TRAINERS))
    parser.add_argument("--seeds", nargs="+", type=int)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--scenario", choices=tuple(SCENARIOS))
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--docs", action="store_true",
                        help="write docs/training.md's table, the JSON and the plot")
    args = parser.parse_args(argv)
    config = FAST if args.fast else Config()
    overrides = {k: (tuple(v) if isinstance(v, list) else v)
                 for k in ("rules", "frameworks", "seeds", "steps", "scenario")
                 if (v := getattr(args, k)) is not None}
    config = replace(config, **overrides)
    if args.original:
        config = replace(config, rules=config.rules + ORIGINAL)
    start = time.perf_counter()
    report = run(config)
    report["wall_seconds"] = time.perf_counter() - start
    print(markdown(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    if args.docs:
        write_docs(report, ROOT / "docs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
