"""Which complete test samples ``shomr``'s router sends to each route, by class.

The towers task's label is ``3 a + b``: ``a`` the image's class (a bar's direction),
``b`` the text's (its signal tokens). A single route sees one modality, so a
complete sample routed there can be classified only up to the other modality's
class, unless the route itself carries it: a router that sends exactly the samples
of one text class to the image route makes the route a code for that class.

For each seed this trains the towers model of ``benchmarks/towers.py``
(``missing_mask``: 30% of the training samples miss one modality, the presence mask
given; PyTorch with Keras's initialisers) with ``shomr`` under each label, then counts, over the complete test samples,
the hard samples on each route by text class and by image class, and the accuracy
per route. Not part of ``make test``::

    .venv/bin/python benchmarks/route_code_probe.py --json docs/assets/route_code_probe.json

Writes the counts per run (``--json``) and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import towers  # noqa: E402

#: today's default, and the default these runs were first made with
LABELS = ("shomr", 'shomr:straight_through_routes="chosen"')
#: the ``towers`` trainer this runs: PyTorch with Keras's initialisers, where the chosen
#: route's factor lost most with the mask (the model is taken from ``keras_setup``)
SETUPS = {"torch-keras-init": towers.KERAS_INIT_PARTS}
#: the torch-keras-init seeds on which the chosen route's factor lost most with the mask
SEEDS = (1, 3, 5, 6)


def job(setup: str, label: str, seed: int) -> dict:
    """One ``missing_mask`` run; the route counts of its final eval on complete samples."""
    import torch

    captured = {}
    keras_setup = towers.keras_setup

    def capture(model, parts=towers.KERAS_INIT_PARTS):
        captured["model"] = model
        return keras_setup(model, parts)

    towers.keras_setup = capture  # train_torch calls it with the model it trains
    kind, fields = towers.parse_rule(label)
    task = towers.make_task(seed, missing=True)
    run = towers.Run(kind, fields, seed, 20, missing=True, mask=True)
    result = towers.train_torch(run, task, keras_init=SETUPS[setup])
    model = captured["model"].eval()
    test = task.test
    with torch.no_grad():
        v = model.tower_v(torch.from_numpy(test.images)[:, None])
        t = model.tower_t(torch.from_numpy(test.tokens))
        fused, aux = model.fusion(v, t, None, return_aux=True)
        pred = model.head(fused).argmax(-1).numpy()
    correct = pred == test.labels
    hard, route = aux["hard"].numpy() > 0.5, aux["route"].numpy()
    image_class, text_class = test.labels // 3, test.labels % 3
    routes = {}
    for k, name in enumerate(("image", "text", "both")):
        on = hard & (route == k)
        routes[name] = {
            "samples": int(on.sum()),
            "accuracy": float(correct[on].mean()) if on.any() else None,
            "text_class": np.bincount(text_class[on], minlength=3).tolist(),
            "image_class": np.bincount(image_class[on], minlength=3).tolist(),
        }
    return {"setup": setup, "rule": label, "seed": seed, "accuracy": float(correct.mean()),
            "soft": int((~hard).sum()), "routes": routes,
            "history_routes": result["history"]["routes"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setups", nargs="+", default=["torch-keras-init"], choices=list(SETUPS))
    ap.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    start = time.perf_counter()
    todo = [(s, label, seed) for s in args.setups for label in LABELS for seed in args.seeds]
    with ProcessPoolExecutor(args.jobs) as pool:
        runs = list(pool.map(job, *zip(*todo, strict=True)))
    for r in runs:
        image = r["routes"]["image"]
        print(f"{r['setup']:17} {r['rule']:42} seed {r['seed']}: accuracy {r['accuracy']:.3f}, "
              f"image route {image['samples']} samples, by text class {image['text_class']}")
    if args.json:
        report = {"machine": f"{platform.machine()}, Python {platform.python_version()}",
                  "wall_seconds": time.perf_counter() - start, "runs": runs}
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
