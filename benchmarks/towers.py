"""Both towers trained from scratch with the fusion layer: the model a user builds.

The task (no download): a 16x16 one-channel image holds one of three patterns (a
horizontal bar, a vertical bar, a diagonal, at a random offset, in unit Gaussian
noise) giving ``a``; a bag of 10 tokens holds three tokens of one of three classes
(vocabulary 0-29, ten per class) among seven distractors (30-59) giving ``b``. The
label is ``y = 3 a + b``: nine classes, chance 1/9, either modality alone caps at 1/3.

The model: a small CNN (two 3x3 convolutions of 16 and 32 channels, ReLU, 2x2 max
pooling, a linear layer to ``D``) over the image, a mean-of-embeddings bag over the
tokens (``nn.EmbeddingBag`` / ``Embedding`` + mean), the fusion layer ``build(kind,
dim=D, **fields)``, and a head ``Linear(D, D)``, ReLU, ``Linear(D, 9)``. The
baseline concatenates ``[v; t]`` into ``Linear(2D, D)``, ReLU, ``Linear(D, 9)``.
Adam (learning rate 3e-3, PyTorch's and Keras's defaults otherwise), batch 128,
6000 training and 1500 test samples. ``energy_aware_adaptive`` trains with its
energy loss (PyTorch: added to the task loss; Keras: the layer's own loss).

Missing modalities (``missing``): 30% of the training samples lose one modality
(half the image, half the text). The absent image is a zero image and the absent
bag holds only the padding token 60; with ``mask`` the presence mask goes to the
fusion layer (training and test), without it the absent embedding is zeroed (what a
user does without a mask). Tested on the complete test samples and on the same
samples with one modality removed each (``one``: half image-only, half text-only,
capped at 1/3 by the task); there also on the present modality's class alone
(``accuracy_present``, recorded by the runs made since 2026-12-07 evening).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np

VOCAB = 60
PAD = VOCAB  # the token of an absent text: its own embedding row, never in a real bag
CLASSES = 9
IMAGE = 16
TOKENS = 10
FRACTION_MISSING = 0.3


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # (N, 16, 16) float32
    tokens: np.ndarray  # (N, 10) int64
    labels: np.ndarray  # (N,) int64
    present: np.ndarray  # (N, 2) bool (image, text)


def _split(rng: np.random.Generator, n: int) -> Split:
    a, b = rng.integers(0, 3, n), rng.integers(0, 3, n)
    images = rng.standard_normal((n, IMAGE, IMAGE)).astype(np.float32)
    pos = rng.integers(2, IMAGE - 2, n)
    span = np.arange(12)
    rows = np.flatnonzero(a == 0)
    images[rows[:, None], pos[rows][:, None], span[None, :] + 2] += 1.5  # horizontal bar
    cols = np.flatnonzero(a == 1)
    images[cols[:, None], span[None, :] + 2, pos[cols][:, None]] += 1.5  # vertical bar
    diag = np.flatnonzero(a == 2)
    images[diag[:, None], (span[None, :] + pos[diag][:, None]) % IMAGE, span[None, :] + 2] += 1.5
    signal = rng.integers(0, 10, (n, 3)) + 10 * b[:, None]
    noise = rng.integers(30, VOCAB, (n, TOKENS - 3))
    tokens = rng.permuted(np.concatenate([signal, noise], axis=1), axis=1).astype(np.int64)
    return Split(images, tokens, (3 * a + b).astype(np.int64), np.ones((n, 2), dtype=bool))


def knock_out(split: Split, fraction: float, rng: np.random.Generator) -> Split:
    """``fraction`` of the samples lose one modality (image or text, half each)."""
    n = len(split.labels)
    present = np.ones((n, 2), dtype=bool)
    hit = rng.random(n) < fraction
    present[hit, rng.integers(0, 2, n)[hit]] = False
    return _apply(split, present)


def one_modality(split: Split) -> Split:
    """Every sample keeps one modality: the image for even indices, the text for odd ones."""
    n = len(split.labels)
    present = np.zeros((n, 2), dtype=bool)
    present[0::2, 0] = True
    present[1::2, 1] = True
    return _apply(split, present)


def _apply(split: Split, present: np.ndarray) -> Split:
    images = np.where(present[:, 0, None, None], split.images, 0.0).astype(np.float32)
    tokens = np.where(present[:, 1, None], split.tokens, PAD)
    return Split(images, tokens, split.labels, present)


@dataclass(frozen=True)
class Task:
    train: Split
    test: Split


def make_task(seed: int, n_train: int = 6000, n_test: int = 1500, missing: bool = False) -> Task:
    rng = np.random.default_rng(seed)
    train, test = _split(rng, n_train), _split(rng, n_test)
    if missing:
        train = knock_out(train, FRACTION_MISSING, rng)
    return Task(train, test)


def epochs_to(accuracies: list[float], share: float = 0.9) -> int:
    """The first epoch (1-based) whose accuracy reaches ``share`` of the final one."""
    final = accuracies[-1]
    return next(i + 1 for i, a in enumerate(accuracies) if a >= share * final)


@dataclass(frozen=True)
class Run:
    kind: str  # "baseline" or a rule
    fields: dict
    seed: int
    epochs: int = 20
    dim: int = 32
    lr: float = 3e-3
    batch: int = 128
    missing: bool = False
    mask: bool = True
    #: PyTorch: also evaluate with running statistics updated by this momentum from the
    #: same training batches (training never reads them), beside the spec's own
    shadow_momentum: float | None = None


# --- PyTorch ------------------------------------------------------------------------


#: Keras's Adam epsilon (added to sqrt(v) before the bias correction, "epsilon hat")
KERAS_EPSILON = 1e-7


def keras_epsilon(step: int, beta2: float = 0.999) -> float:
    """PyTorch's Adam ``eps`` at ``step`` (1-based) that makes its update Keras's with
    ``KERAS_EPSILON`` (see tests/keras/test_keras_torch_training.py)."""
    return KERAS_EPSILON / np.sqrt(1.0 - beta2**step)


#: the parts of the Keras model's initialisation ``keras_setup`` can give a PyTorch model
KERAS_INIT_PARTS = ("kernels", "biases", "embeddings")


def keras_setup(model, parts: tuple[str, ...] = KERAS_INIT_PARTS) -> None:
    """Give a PyTorch towers model Keras's initialisers, the ``parts`` of them named:
    glorot-uniform ``kernels`` and zero ``biases`` for the convolutions and dense layers
    of the image tower and the head, and uniform(-0.05, 0.05) ``embeddings``; the others
    keep PyTorch's, and the fusion layer its spec's initialisation."""
    import torch
    from torch import nn

    unknown = set(parts) - set(KERAS_INIT_PARTS)
    if unknown:
        raise ValueError(f"keras_setup: parts must be among {KERAS_INIT_PARTS}, got {sorted(unknown)}")
    with torch.no_grad():
        for m in (*model.tower_v, *model.head):
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                if "kernels" in parts:
                    nn.init.xavier_uniform_(m.weight)
                if "biases" in parts:
                    nn.init.zeros_(m.bias)
        if "embeddings" in parts:
            nn.init.uniform_(model.tower_t.weight, -0.05, 0.05)


def train_torch(run: Run, task: Task, keras_like: bool = False,
                keras_init: tuple[str, ...] = ()) -> dict:
    """``keras_like``: the model and training of ``train_keras`` in PyTorch (its
    initialisers, its Adam epsilon and placement, and the last partial batch of each
    epoch, which Keras trains on and this trainer otherwise drops); ``keras_init``: the
    parts of its initialisers named (``KERAS_INIT_PARTS``) alone."""
    import torch
    from torch import nn

    from fusion_spec.backends.torch import build

    torch.set_num_threads(1)  # small matrices; two runs share the machine's cores
    torch.manual_seed(run.seed)
    d = run.dim

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.tower_v = nn.Sequential(
                nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Flatten(), nn.Linear(32 * (IMAGE // 4) ** 2, d),
            )
            self.tower_t = nn.EmbeddingBag(VOCAB + 1, d, mode="mean")
            baseline = run.kind == "baseline"
            self.fusion = None if baseline else build(run.kind, dim=d, **run.fields)
            self.head = nn.Sequential(nn.Linear(2 * d if baseline else d, d), nn.ReLU(),
                                      nn.Linear(d, CLASSES))

        def forward(self, images, tokens, present):
            v, t = self.tower_v(images[:, None]), self.tower_t(tokens)
            if present is not None and not (run.mask and self.fusion is not None):
                v, t = v * present[:, :1], t * present[:, 1:]  # zero-fill
                present = None
            if self.fusion is None:
                return self.head(torch.cat([v, t], dim=-1)), {}
            fused, aux = self.fusion(v, t, present, return_aux=True)
            return self.head(fused), aux

    model = Model()
    if keras_like or keras_init:
        keras_setup(model, KERAS_INIT_PARTS if keras_like else keras_init)
    opt = torch.optim.Adam(model.parameters(), lr=run.lr,
                           **({"eps": KERAS_EPSILON} if keras_like else {}))
    steps = 0
    tr = task.train
    images, tokens, labels = (torch.from_numpy(a) for a in (tr.images, tr.tokens, tr.labels))
    present = torch.from_numpy(tr.present) if run.missing else None
    gen = torch.Generator().manual_seed(run.seed)
    tests = {"complete": task.test}
    if run.missing:
        tests["one"] = one_modality(task.test)
    history: dict[str, list] = {"accuracy": [], "loss": [], "routes": [], "grad_image": [],
                                "grad_text": [], "energy": []}
    if run.missing:
        history["accuracy_one"] = []
        history["accuracy_present"] = []
    towers = {"grad_image": model.tower_v, "grad_text": model.tower_t}
    probe = slice(0, run.batch)  # the gradient norms' batch: the first training samples
    shadow = (None if run.shadow_momentum is None or model.fusion is None
              else ShadowStats(model.fusion, run.shadow_momentum))
    if shadow is not None:
        for key in [k for k in history if k.startswith("accuracy")]:
            history[f"{key}_shadow"] = []

    def tower_gradients():
        """Each tower's gradient norm on the probe batch, in training mode; no state kept."""
        if shadow is not None:
            shadow.active = False
        state = {k: b.clone() for k, b in model.named_buffers()}
        logits, aux = model(images[probe], tokens[probe],
                            None if present is None else present[probe])
        model.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(logits, labels[probe]).backward()
        with torch.no_grad():
            for k, b in model.named_buffers():
                b.copy_(state[k])
        for k, tower in towers.items():
            history[k].append(float(torch.sqrt(sum(
                p.grad.square().sum() for p in tower.parameters() if p.grad is not None
            ))))
        model.zero_grad(set_to_none=True)
        if shadow is not None:
            shadow.active = True

    start = time.perf_counter()
    for _ in range(run.epochs):
        model.train()
        order = torch.randperm(len(labels), generator=gen)
        energy = []
        last = len(labels) if keras_like else len(labels) - run.batch + 1
        for i in range(0, last, run.batch):
            idx = order[i : i + run.batch]
            steps += 1
            if keras_like:
                for group in opt.param_groups:
                    group["eps"] = keras_epsilon(steps)
            logits, aux = model(images[idx], tokens[idx], None if present is None else present[idx])
            loss = nn.functional.cross_entropy(logits, labels[idx])
            if "energy_loss" in aux:
                loss = loss + aux["energy_loss"]
                energy.append(float(aux["expected_energy"].detach().mean()))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        tower_gradients()
        history["energy"].append(float(np.mean(energy)) if energy else None)
        model.eval()
        with torch.no_grad():
            for name, split in tests.items():
                p = torch.from_numpy(split.present) if name == "one" else None
                x = (torch.from_numpy(split.images), torch.from_numpy(split.tokens), p)
                logits, aux = model(*x)
                acc = float((logits.argmax(-1).numpy() == split.labels).mean())
                key = "accuracy" if name == "complete" else "accuracy_one"
                history[key].append(acc)
                if name == "one":
                    history["accuracy_present"].append(
                        present_accuracy(logits.argmax(-1).numpy(), split))
                if name == "complete":  # the test loss: less noisy than the accuracy
                    target = torch.from_numpy(split.labels)
                    history["loss"].append(float(nn.functional.cross_entropy(logits, target)))
                if shadow is not None:
                    shadow.swap()
                    pred = model(*x)[0].argmax(-1).numpy()
                    shadow.swap()
                    history[f"{key}_shadow"].append(float((pred == split.labels).mean()))
                if name == "complete":
                    routes = (np.bincount(aux["route"].numpy(), minlength=3) / len(split.labels)
                              if "route" in aux else None)
                    history["routes"].append(None if routes is None else routes.round(4).tolist())
    out = _summary(history, time.perf_counter() - start)
    if shadow is not None:
        out["shadow_momentum"] = run.shadow_momentum
    return out


class ShadowStats:
    """Running statistics of a PyTorch fusion layer's ``input_norm`` updated with another
    momentum from the batches the layer normalises in training: a forward pre-hook runs
    a copy of each ``RunningStats`` module (the layer's own update code) with the spec's
    momentum replaced. ``swap()`` exchanges the copies' buffers with the layer's, for an
    eval with them and back."""

    def __init__(self, fusion, momentum: float):
        import copy

        import torch

        from fusion_spec.backends.torch._layers import RunningStats

        self.active = True
        spec = fusion.spec.model_copy(update={"input_norm_momentum": momentum})
        self.twins = {m: copy.deepcopy(m) for m in fusion.modules() if isinstance(m, RunningStats)}

        def hook(module, args):
            if module.training and self.active:
                with torch.no_grad():
                    self.twins[module].train()(args[0], args[1], spec)

        for m in self.twins:
            m.register_forward_pre_hook(hook)

    def swap(self) -> None:
        for m, twin in self.twins.items():
            for name in ("running_mean", "running_var"):
                own = getattr(m, name).clone()
                getattr(m, name).copy_(getattr(twin, name))
                getattr(twin, name).copy_(own)


def present_accuracy(pred: np.ndarray, split: Split) -> float:
    """The share of one-modality samples whose predicted class ``pred`` gets the present
    modality's class right (``a = y // 3`` for an image, ``b = y % 3`` for a text):
    what a model can know there. ``accuracy_one`` also counts the absent modality's
    class, a guess among three equally likely ones (capped at 1/3)."""
    image = split.present[:, 0]
    right = np.where(image, pred // 3 == split.labels // 3, pred % 3 == split.labels % 3)
    return float(right.mean())


def _summary(history: dict, seconds: float) -> dict:
    out = {
        "accuracy": history["accuracy"][-1],
        "epochs_to_90": epochs_to(history["accuracy"]),
        "train_seconds": round(seconds, 1),
        "history": history,
    }
    for key in ("accuracy_one", "accuracy_present", "accuracy_shadow", "accuracy_one_shadow"):
        if key in history:
            out[key] = history[key][-1]
    return out


# --- Keras --------------------------------------------------------------------------


def train_keras(run: Run, task: Task) -> dict:
    import keras
    from keras import layers

    from fusion_spec.backends.keras import build

    keras.utils.set_random_seed(run.seed)
    d = run.dim
    in_img = keras.Input((IMAGE, IMAGE), name="images")
    in_tok = keras.Input((TOKENS,), dtype="int32", name="tokens")
    in_pre = keras.Input((2,), dtype="bool", name="present")
    tower_v = keras.Sequential([
        layers.Reshape((IMAGE, IMAGE, 1)),
        layers.Conv2D(16, 3, padding="same", activation="relu"), layers.MaxPooling2D(2),
        layers.Conv2D(32, 3, padding="same", activation="relu"), layers.MaxPooling2D(2),
        layers.Flatten(), layers.Dense(d),
    ], name="tower_v")
    embed = layers.Embedding(VOCAB + 1, d, name="tower_t")
    v = tower_v(in_img)
    t = keras.ops.mean(embed(in_tok), axis=1)
    mask_to_fusion = run.missing and run.mask and run.kind != "baseline"
    if run.missing and not mask_to_fusion:
        v = v * keras.ops.cast(in_pre[:, :1], "float32")
        t = t * keras.ops.cast(in_pre[:, 1:], "float32")
    aux_out = {}
    if run.kind == "baseline":
        fused = layers.Concatenate()([v, t])
    else:
        fusion = build(run.kind, seed=run.seed, dim=d, **run.fields)
        args = (v, t, in_pre) if mask_to_fusion else (v, t)
        fused, aux = fusion(*args, return_aux=True)
        if "route" in aux:
            aux_out["route"] = aux["route"]
    logits = layers.Dense(CLASSES)(layers.Dense(d, activation="relu")(fused))
    inputs = [in_img, in_tok, in_pre]
    model = keras.Model(inputs, logits)
    model.compile(optimizer=keras.optimizers.Adam(run.lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    probe = keras.Model(inputs, aux_out) if aux_out else None
    tests = {"complete": task.test}
    if run.missing:
        tests["one"] = one_modality(task.test)
    history: dict[str, list] = {"accuracy": [], "loss": [], "routes": [], "grad_image": [],
                                "grad_text": []}
    if run.missing:
        history["accuracy_one"] = []
        history["accuracy_present"] = []
    tr = task.train
    grads = _keras_tower_gradients(model, tr, run.batch)

    class Watch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            for name, split in tests.items():
                x = [split.images, split.tokens, split.present]
                pred = model.predict(x, batch_size=1500, verbose=0)
                acc = float((pred.argmax(-1) == split.labels).mean())
                history["accuracy" if name == "complete" else "accuracy_one"].append(acc)
                if name == "one":
                    history["accuracy_present"].append(present_accuracy(pred.argmax(-1), split))
                if name == "complete":  # the test loss: less noisy than the accuracy
                    history["loss"].append(cross_entropy(pred, split.labels))
                    routes = None
                    if probe is not None:
                        r = np.asarray(probe.predict(x, batch_size=1500, verbose=0)["route"])
                        routes = (np.bincount(r.astype(np.int64), minlength=3) / len(r)).round(4)
                    history["routes"].append(None if routes is None else routes.tolist())
            if grads is not None:
                g_image, g_text = grads()
                history["grad_image"].append(g_image)
                history["grad_text"].append(g_text)

    start = time.perf_counter()
    model.fit([tr.images, tr.tokens, tr.present], tr.labels, batch_size=run.batch,
              epochs=run.epochs, shuffle=True, verbose=0, callbacks=[Watch()])
    return _summary(history, time.perf_counter() - start)


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """The mean softmax cross-entropy of ``logits`` ``(N, C)`` at ``labels`` ``(N,)``, in
    float64 (the PyTorch trainer's ``cross_entropy``, for Keras's predictions)."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


def _keras_tower_gradients(model, split: Split, batch: int):
    """On JAX: the two towers' gradient norms on the first training batch, in training mode
    (as the PyTorch trainer measures them at the end of each epoch); ``None`` on other
    backends."""
    import keras

    if keras.backend.backend() != "jax":
        return None
    import jax

    x = [split.images[:batch], split.tokens[:batch], split.present[:batch]]
    y = split.labels[:batch]
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def norms():
        trainable = [v.value for v in model.trainable_variables]
        fixed = [v.value for v in model.non_trainable_variables]

        def loss(tv):
            logits, _ = model.stateless_call(tv, fixed, x, training=True)
            return loss_fn(y, logits)

        g = jax.grad(loss)(trainable)
        sums = {"tower_v": 0.0, "tower_t": 0.0}
        for var, grad in zip(model.trainable_variables, g, strict=True):
            top = var.path.split("/")[0]
            if top in sums:
                sums[top] += float(np.sum(np.square(np.asarray(grad))))
        return float(np.sqrt(sums["tower_v"])), float(np.sqrt(sums["tower_t"]))

    return norms


def train_torch_keras_like(run: Run, task: Task) -> dict:
    return train_torch(run, task, keras_like=True)


def train_torch_keras_init(run: Run, task: Task) -> dict:
    return train_torch(run, task, keras_init=KERAS_INIT_PARTS)


def train_torch_keras_kernels(run: Run, task: Task) -> dict:
    return train_torch(run, task, keras_init=("kernels",))


def train_torch_keras_biases(run: Run, task: Task) -> dict:
    return train_torch(run, task, keras_init=("biases",))


def train_torch_keras_embeddings(run: Run, task: Task) -> dict:
    return train_torch(run, task, keras_init=("embeddings",))


TRAINERS = {"torch": train_torch, "keras-jax": train_keras,
            "torch-keras-like": train_torch_keras_like,
            "torch-keras-init": train_torch_keras_init,
            "torch-keras-kernels": train_torch_keras_kernels,
            "torch-keras-biases": train_torch_keras_biases,
            "torch-keras-embeddings": train_torch_keras_embeddings}
#: the frameworks users run, by default and in the tables
FRAMEWORKS = ("torch", "keras-jax")
#: the other trainers: diagnoses of a difference between the two frameworks' runs,
#: printed only in the missing table's pooled line
DIAGNOSES = {"torch-keras-like": "the PyTorch model given the Keras model's initialisers, "
                                 "Adam epsilon and last partial batch",
             "torch-keras-init": "the PyTorch model given the Keras model's initialisers "
                                 "alone",
             "torch-keras-kernels": "the PyTorch model given the Keras model's "
                                    "glorot-uniform kernels alone",
             "torch-keras-biases": "the PyTorch model given the Keras model's zero biases alone",
             "torch-keras-embeddings": "the PyTorch model given the Keras model's "
                                       "uniform(-0.05, 0.05) embeddings alone"}


# --- the run ------------------------------------------------------------------------

BASELINE = "baseline"
RULES = (
    "simple", "concat_mlp", "gated", "film", "modality_dropout",
    "transformer_concat", "cross_attention", "shomr", "energy_aware_adaptive",
)
#: what docs/training.md measures: each rule with its defaults (``input_norm="batch"``
#: among them), and with the per-sample ``input_norm="none"`` for comparison
MEASURED = (*RULES, *(f'{kind}:input_norm="none"' for kind in RULES))
#: scenario -> (missing, mask)
SCENARIOS = {"complete": (False, True), "missing_mask": (True, True),
             "missing_no_mask": (True, False)}


def parse_rule(label: str) -> tuple[str, dict]:
    """``"shomr:input_norm=\\"none\\";straight_through=false"`` -> ``("shomr", {...})``."""
    kind, _, rest = label.partition(":")
    fields = {}
    for item in filter(None, rest.split(";")):
        key, _, value = item.partition("=")
        fields[key] = json.loads(value)
    return kind, fields


def format_rule(kind: str, fields: dict) -> str:
    """``parse_rule``'s inverse: ``("shomr", {"input_norm": "none"})`` ->
    ``'shomr:input_norm="none"'`` (the kind alone without fields)."""
    rest = ";".join(f"{k}={json.dumps(v)}" for k, v in fields.items())
    return f"{kind}:{rest}" if rest else kind


def job(framework: str, label: str, seed: int, scenario: str, epochs: int,
        shadow_momentum: float | None = None) -> dict:
    """One training run (in its own process: Keras reads KERAS_BACKEND at import)."""
    import os

    if framework == "keras-jax":
        os.environ["KERAS_BACKEND"] = "jax"
    kind, fields = parse_rule(label)
    missing, mask = SCENARIOS[scenario]
    task = make_task(seed, missing=missing)
    shadow = shadow_momentum if framework == "torch" else None
    result = TRAINERS[framework](Run(kind, fields, seed, epochs, missing=missing, mask=mask,
                                     shadow_momentum=shadow), task)
    return {"framework": framework, "rule": label, "seed": seed, "scenario": scenario, **result}


def run_all(labels, frameworks, seeds, scenarios, epochs: int, jobs: int, out, log=print,
            baseline: bool = True, shadow_momentum: float | None = None) -> dict:
    """Every (scenario, framework, rule, seed), ``jobs`` processes at a time; the report is
    rewritten to ``out`` after each run (an interrupted run keeps what finished). Without
    ``baseline`` the baseline's runs are left out (for a report merged with one that has
    them: the baseline does not depend on any rule's field)."""
    import json
    import multiprocessing
    import os
    import platform
    from concurrent.futures import ProcessPoolExecutor, as_completed

    report = {
        "config": {"rules": list(labels), "frameworks": list(frameworks), "seeds": list(seeds),
                   "scenarios": list(scenarios), "epochs": epochs, "dim": Run.dim,
                   "lr": Run.lr, "batch": Run.batch, "fraction_missing": FRACTION_MISSING},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared), "
                   f"Python {platform.python_version()}",
        "results": [],
    }
    if out is not None and out.exists():  # resume: keep finished runs of the same config
        old = json.loads(out.read_text())
        if old.get("config") == report["config"]:
            report["results"] = old["results"]
    done = {(r["framework"], r["rule"], r["seed"], r["scenario"]) for r in report["results"]}
    todo = [(fw, label, seed, sc) for sc in scenarios for fw in frameworks
            for seed in seeds for label in ((BASELINE,) * baseline + tuple(labels))
            if (fw, label, seed, sc) not in done
            and not (label == BASELINE and sc == "missing_mask")]  # the baseline takes no mask
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = {pool.submit(job, fw, label, seed, sc, epochs, shadow_momentum): (fw, label, seed, sc)
                   for fw, label, seed, sc in todo}
        for future in as_completed(futures):
            r = future.result()
            report["results"].append(r)
            log(f"{r['scenario']:16s} {r['framework']:10s} {r['rule']:40s} seed {r['seed']}: "
                f"accuracy {r['accuracy']:.3f}"
                + (f" one {r['accuracy_one']:.3f}" if "accuracy_one" in r else "")
                + f" ({r['train_seconds']:.0f} s)")
            if out is not None:
                out.write_text(dumps(report))
    return report


def dumps(report: dict) -> str:
    """``report`` as JSON text, one run per line: a third smaller than indented JSON
    (a run's history is long), and a diff still shows which runs changed."""
    import json

    head = [f" {json.dumps(k)}: {json.dumps(v)}," for k, v in report.items() if k != "results"]
    runs = ",\n".join(f"  {json.dumps(r)}" for r in report["results"])
    return "\n".join(["{", *head, ' "results": [', runs, " ]", "}"]) + "\n"


# --- tables and plot ------------------------------------------------------------------


def _by(report: dict, scenario: str):
    rows: dict[tuple[str, str], dict[int, dict]] = {}
    for r in report["results"]:
        if r["scenario"] == scenario:
            rows.setdefault((r["rule"], r["framework"]), {})[r["seed"]] = r
    return rows


def ratios(report: dict, scenario: str = "complete", key: str = "accuracy") -> dict:
    """(rule, framework) -> {seed: accuracy / the baseline's of the same framework and seed}."""
    rows = _by(report, scenario)
    base_rows = _by(report, "complete" if scenario == "missing_mask" else scenario)
    out = {}
    for (label, fw), seeds in rows.items():
        if label == BASELINE:
            continue
        base = base_rows.get((BASELINE, fw), {})
        out[(label, fw)] = {s: r[key] / base[s][key] for s, r in seeds.items() if s in base}
    return out


def merge(reports: list[dict]) -> dict:
    """One report from runs made separately (a framework or scenario at a time, each
    with its own seeds): the union of their rules, frameworks, seeds and scenarios;
    the training settings must be equal. A later report's run of the same (framework,
    rule, seed, scenario) replaces an earlier one's."""
    fixed = ("epochs", "dim", "lr", "batch", "fraction_missing")
    first = reports[0]["config"]
    for r in reports[1:]:
        for key in fixed:
            if r["config"].get(key) != first.get(key):
                raise ValueError(f"merge: {key} differs: {first.get(key)!r} and "
                                 f"{r['config'].get(key)!r}; runs of other settings do not mix")

    def union(key):
        out: list = []
        for r in reports:
            out += [x for x in r["config"][key] if x not in out]
        return out

    results = {}
    for r in reports:
        for x in r["results"]:
            results[(x["framework"], x["rule"], x["seed"], x["scenario"])] = x
    kept = {k: first[k] for k in ("earlier_defaults",) if k in first}  # a table's legend
    return {
        "config": {**{k: first[k] for k in fixed if k in first}, **kept,
                   **{k: union(k) for k in ("rules", "frameworks", "seeds", "scenarios")}},
        "machine": sorted({m for r in reports for m in _machines(r)}),
        "results": list(results.values()),
    }


def _machines(report: dict) -> list[str]:
    """A report's machine line, or the lines of a merged report (a list)."""
    machine = report.get("machine", "")
    return list(machine) if isinstance(machine, list) else [machine]


def seeds_of(report: dict, scenario: str) -> str:
    """The seeds each framework ran in ``scenario``: "torch 0, 1, 2; keras-jax 0"."""
    per: dict[str, set] = {}
    for r in report["results"]:
        if r["scenario"] == scenario:
            per.setdefault(r["framework"], set()).add(r["seed"])
    return "; ".join(f"{fw} {', '.join(map(str, sorted(seeds)))}" for fw, seeds in per.items())


def input_norm_of(label: str) -> str:
    """The ``input_norm`` a label's run computed with: its field, else the spec's default."""
    from fusion_spec import spec

    kind, fields = parse_rule(label)
    return fields.get("input_norm", spec.RULES[kind].model_fields["input_norm"].default)


def _name(label: str, cell: bool = False) -> str:
    """The rule cell of a label: the kind, its other fields, and "(no input norm)" for
    ``input_norm="none"`` (short cells: the tables must fit a phone's width). ``cell``:
    a table cell, the kind and each field on a line of their own."""
    if label == BASELINE:
        return "concatenate + MLP (baseline)"
    kind, fields = parse_rule(label)
    norm = input_norm_of(label)
    fields.pop("input_norm", None)
    items = [f"{k}={v}" for k, v in fields.items()]
    if cell and items:
        text = f"{kind}:`<br>`" + ";`<br>`".join(items)
    else:
        text = kind + (":" + ";".join(items) if items else "")
    return f"`{text}`" + (" (no input norm)" if norm == "none" else "")


def _short_name(label: str) -> str:
    """``_name``, but an earlier default (``EARLIER_DEFAULTS``) as its kind and "(earlier
    default)": the seven-column table must fit the page's width."""
    if label in EARLIER_DEFAULTS:
        return f"`{parse_rule(label)[0]}` (earlier default)"
    return _name(label)


def _earlier_legend(labels) -> str:
    """The complete table's legend for its earlier-default rows ("" without them)."""
    shown = [label for label in labels if label in EARLIER_DEFAULTS]
    if not shown:
        return ""
    return (' "(earlier default)": the runs made before a default changed, '
            + ", ".join(_name(label) for label in shown) + ".")


def markdown_complete(report: dict) -> str:
    cfg = report["config"]
    lines = [
        f"Both towers trained from scratch, complete data: test accuracy after "
        f"{cfg['epochs']} epochs, seeds {seeds_of(report, 'complete')} (chance 1/9; one modality alone "
        "caps at 1/3). Ratio: accuracy over the baseline's of the same framework and seed "
        "(median and worst seed). Epochs: to 90% of the final accuracy (median). Routes: "
        "the eval routes (image, text, both) of the median-accuracy seed. Rows without a "
        'suffix: the defaults (input_norm="batch"); "(no input norm)": input_norm="none".'
        + _earlier_legend(cfg["rules"]),
        "",
        "| rule | framework | accuracy per seed | median ratio | worst ratio | epochs | routes |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, fw, c in _cells(report):
        lines.append(f"| {_short_name(label)} | {fw} | {c['accuracies']} | {c['median']} | "
                     f"{c['worst']} | {c['epochs']} | {c['routes']} |")
    return "\n".join(lines) + "\n"


def _cells(report: dict):
    """(label, framework, cells) of each complete-data row: the accuracy per seed, the
    median and worst ratio to the baseline, the median epochs to 90%, and the eval
    routes of the median-accuracy seed, as the tables print them."""
    cfg = report["config"]
    rows, ratio = _by(report, "complete"), ratios(report)
    for label in (BASELINE, *cfg["rules"]):
        for fw in cfg["frameworks"]:
            seeds = rows.get((label, fw))
            if not seeds:
                continue
            r = ratio.get((label, fw), {})
            order = sorted(seeds, key=lambda s: seeds[s]["accuracy"])
            middle = seeds[order[len(order) // 2]]["history"]
            routes = middle["routes"][-1]
            energy = (middle.get("energy") or [None])[-1]
            yield label, fw, {
                "accuracies": " ".join(f"{seeds[s]['accuracy']:.2f}" for s in sorted(seeds)),
                "median": f"{np.median(list(r.values())):.2f}" if r else "",
                "worst": f"{min(r.values()):.2f}" if r else "",
                "epochs": f"{np.median([seeds[s]['epochs_to_90'] for s in seeds]):.0f}",
                "routes": "" if routes is None else " / ".join(f"{x:.2f}" for x in routes),
                "energy": "" if energy is None else f"{energy:.2f}",
            }


def _budget(label: str) -> str:
    """The energy budget of a label's spec (its field, else the default), as the page prints it."""
    from fusion_spec import spec

    kind, fields = parse_rule(label)
    return f"{spec.parse(kind, dim=Run.dim, **fields).energy_budget_mJ:g}"


def markdown_one_field(report: dict) -> str:
    """One rule with a few fields changed per row (``EAA_JSON``): the row names the
    changes only (short cells: the table must fit a phone's width)."""
    cfg = report["config"]
    lines = [
        f"`{cfg['rules'][0].split(':')[0]}`, both towers trained from scratch, complete "
        f"data, {cfg['epochs']} epochs, seeds {seeds_of(report, 'complete')}; each row "
        "names the fields it changes from the defaults. Ratio: accuracy over the baseline's "
        "of the same seed. Routes: the eval routes (image, text, both) of the median-accuracy "
        "seed. Energy: that seed's mean expected energy in mJ over its last training epoch "
        f"(the budget: {_budget(cfg['rules'][0])} mJ).",
        "",
        "| change | accuracy per seed | median ratio | worst ratio | routes | energy |",
        "|---|---|---|---|---|---|",
    ]
    earlier = cfg.get("earlier_defaults", {})
    if earlier:
        lines[0] += (' "Earlier defaults": ' + ", ".join(f"`{k}={v}`" for k, v in earlier.items())
                     + ", the defaults these runs were first made with.")
    common = _common_fields([label for label in cfg["rules"] if label != BASELINE])
    if common:
        lines[0] += (" Every row also ran with " + ", ".join(f"`{k}={v}`" for k, v in common.items())
                     + ", a default of the time, not named in the rows.")
    for label, _fw, c in _cells(report):
        _, fields = parse_rule(label)
        fields = {k: v for k, v in fields.items() if k not in common}
        old = bool(earlier) and all(fields.get(k) == v for k, v in earlier.items())
        if old:
            fields = {k: v for k, v in fields.items() if k not in earlier}
        parts = ["earlier defaults"] * old + [f"`{k}={v}`" for k, v in fields.items()]
        change = ("baseline (concatenate + MLP)" if label == BASELINE else
                  "; ".join(parts) or "none (the defaults)")
        lines.append(f"| {change} | {c['accuracies']} | {c['median']} | {c['worst']} | "
                     f"{c['routes']} | {c['energy']} |")
    return "\n".join(lines) + "\n"


def _common_fields(labels: list[str]) -> dict:
    """The fields that every label sets to the same value (none for fewer than two)."""
    if len(labels) < 2:
        return {}
    first = parse_rule(labels[0])[1]
    return {k: v for k, v in first.items()
            if all(parse_rule(label)[1].get(k, object()) == v for label in labels[1:])}


#: the last epochs whose epoch-to-epoch changes of test accuracy measure the swing
SWING_EPOCHS = 10


def swing(accuracies: list[float], epochs: int = SWING_EPOCHS) -> float:
    """The mean |change| of test accuracy between consecutive epochs over the last ``epochs``."""
    return float(np.abs(np.diff(accuracies[-epochs:])).mean())


def markdown_momentum(report: dict, old: dict) -> str:
    """The rules' defaults (``report``) beside the earlier running statistics update
    ``input_norm_momentum=0.1``: per framework, over the nine rules and their seeds.
    Where the default runs carry ``accuracy_shadow`` (PyTorch, ``--shadow-momentum``),
    the 0.1 row is the same runs evaluated with the shadow statistics; otherwise it is
    the runs of ``old`` (``MOMENTUM_JSON``), made before the change."""
    rows_new, rows_old = _by(report, "complete"), _by(old, "complete")
    frameworks = report["config"]["frameworks"]
    base = {fw: rows_new.get((BASELINE, fw), {}) for fw in frameworks}
    lines = [
        f"Complete data, {report['config']['epochs']} epochs, the nine rules with their "
        f"defaults but the running statistics' update. Swing: the mean change of test "
        f"accuracy from one epoch to the next over the last {SWING_EPOCHS} epochs, the "
        "median over the rules' runs (the baseline's own runs on its row). Lowest median: "
        "the lowest of the rules' median ratios to the baseline; worst seed: the lowest "
        "ratio of any rule's seed, and its rule. \"Same runs\": each training run "
        "evaluated with both updates (running statistics of 0.1 follow the same training "
        "batches beside the layer's own; training reads neither). \"Earlier runs\": runs "
        "made with 0.1 before the change, by an earlier version of the code whose training "
        "differs from today's from the first epoch, so that row compares two sets of runs.",
        "",
        "| `input_norm_momentum` | framework | seeds | swing | lowest median | worst seed |",
        "|---|---|---|---|---|---|",
    ]

    def runs_of(rows, fw, fields):
        out = {}
        for (label, f), seeds in rows.items():
            kind, given = parse_rule(label)
            if (f == fw and label != BASELINE and input_norm_of(label) == "batch"
                    and given == fields):
                out[kind] = {s: r for s, r in seeds.items() if s in base[fw]}
        return out

    def row(value, fw, runs, key):
        ratio = {k: {s: r[key] / base[fw][s]["accuracy"] for s, r in v.items()}
                 for k, v in runs.items()}
        worst = min((min(v.values()), k) for k, v in ratio.items())
        seeds = sorted({s for v in runs.values() for s in v})
        history = "accuracy" if key == "accuracy" else "accuracy_shadow"
        return (f"| {value} | {fw} | {', '.join(map(str, seeds))} | "
                f"{np.median([swing(r['history'][history]) for v in runs.values() for r in v.values()]):.3f} | "
                f"{min(np.median(list(v.values())) for v in ratio.values()):.2f} | "
                f"{worst[0]:.2f} (`{worst[1]}`) |")

    for fw in frameworks:
        if not base[fw]:
            continue
        lines.append(f"| baseline (no input norm) | {fw} | {', '.join(map(str, sorted(base[fw])))} | "
                     f"{np.median([swing(r['history']['accuracy']) for r in base[fw].values()]):.3f}"
                     " |  |  |")
        current = runs_of(rows_new, fw, {})
        shadows = {r.get("shadow_momentum") for v in current.values() for r in v.values()}
        if current and len(shadows) == 1 and None not in shadows:
            lines.append(row(f"{shadows.pop():g} (same runs)", fw, current, "accuracy_shadow"))
        else:
            earlier = runs_of(rows_old, fw, {"input_norm_momentum": 0.1})
            if earlier:
                lines.append(row("0.1 (earlier runs)", fw, earlier, "accuracy"))
        if current:
            lines.append(row(f"{_default('input_norm_momentum'):g} (default)", fw, current, "accuracy"))
    return "\n".join(lines) + "\n"


def _default(field: str):
    from fusion_spec import spec

    return spec.RULES["simple"].model_fields[field].default


#: Seeds run only for the rows that the first seeds name: a replication on fresh seeds (a
#: cost that the first seeds show by chance should not come back on new ones). The table
#: leaves them out, so that every row counts the same seeds.
REPLICATION_SEEDS = (5, 6, 7, 8, 9)
#: Seeds run for a row whose cost the replication left unsettled (more seeds, more power):
#: the table, the named rows and both pooled views leave them out, as they leave out the
#: replication; ``markdown_extended`` judges such a row on every seed it ran.
EXTENDED_SEEDS = tuple(range(10, 20))

#: A row is named where the mean paired difference lies below 0 by more than this many
#: standard errors.
NOISE_SE = 2
#: NOISE_SE in the generated prose
NOISE_SE_WORDS = {1: "once", 2: "twice"}.get(NOISE_SE, f"{NOISE_SE:g} times")
#: The pooled line also averages each run's accuracy over its last this many epochs
#: (evaluations swing from one epoch to the next; see ``swing``).
POOL_EPOCHS = 5


def _noise(d: np.ndarray) -> float:
    """NOISE_SE standard errors of the mean of the differences ``d`` (two or more)."""
    return NOISE_SE * d.std(ddof=1) / np.sqrt(len(d))


def _paired(a: dict, b: dict, key: str, last: int | None = None):
    """Mask minus no mask over the seeds both ran, of the final ``key`` (``last`` None) or
    of its mean over the last ``last`` epochs' evaluations: (differences, mean, NOISE_SE
    standard errors or None for one seed), or None for no common seed."""
    def value(r):
        return r[key] if last is None else np.mean(r["history"][key][-last:])

    d = np.array([value(a[s]) - value(b[s]) for s in sorted(set(a) & set(b))])
    if len(d) == 0:
        return None
    return d, d.mean(), _noise(d) if len(d) > 1 else None


def _chance(n: int) -> float:
    """The probability that a row of ``n`` paired seeds is named when the mask changes
    nothing: ``P(T < -NOISE_SE)`` for Student's t with ``n - 1`` degrees of freedom
    (normal per-seed differences of mean 0)."""
    from scipy import stats

    return float(stats.t.cdf(-NOISE_SE, n - 1))


#: Fields that act only where a presence mask is given: a run without the mask computes
#: what the rule without them computes, so a label that sets only these pairs its mask
#: runs with that label's no-mask runs.
MASK_ONLY_FIELDS = frozenset({"input_norm_absent", "missing_modality", "lone_gradient"})


#: Labels whose fields were the rule's defaults when their runs were made (kept, relabelled,
#: when a default changed): the per-rule pooled table shows them beside today's default.
EARLIER_DEFAULTS = frozenset({'shomr:straight_through_routes="chosen"',
                              'cross_attention:lone_gradient="pass"'})


def _mask_only(label: str) -> bool:
    """Whether ``label`` sets fields, all of them ``MASK_ONLY_FIELDS``."""
    fields = parse_rule(label)[1] if label != BASELINE else {}
    return bool(fields) and set(fields) <= MASK_ONLY_FIELDS


def _without_mask(report: dict) -> dict:
    """``_by(report, "missing_no_mask")``, with each mask-only label's rows those of its
    label without the mask-only fields."""
    rows = _by(report, "missing_no_mask")
    for label, fw in list(_by(report, "missing_mask")):
        if _mask_only(label):
            kind, fields = parse_rule(label)
            rest = {k: v for k, v in fields.items() if k not in MASK_ONLY_FIELDS}
            plain = format_rule(kind, rest)
            if (plain, fw) in rows and (label, fw) not in rows:  # its own runs first
                rows[(label, fw)] = rows[(plain, fw)]
    return rows


def markdown_missing(report: dict) -> str:
    cfg = report["config"]
    first = {**report, "results": [r for r in report["results"]
                                   if r["seed"] not in REPLICATION_SEEDS + EXTENDED_SEEDS]}
    mask, plain = _by(first, "missing_mask"), _without_mask(first)
    shown = {**first, "results": [r for r in first["results"] if r["framework"] in FRAMEWORKS]}
    lines = [
        f"30% of the training samples miss one modality; median accuracy over each row's "
        f"seeds (seeds {seeds_of(shown, 'missing_mask')}; each row counts its seeds with the mask / without) "
        "on the complete test samples and on the same samples with one "
        "modality each (capped at 1/3 by the task), with the presence mask given to the "
        "fusion layer in training and test, and without it (absent embeddings zeroed). "
        "Difference: mask minus no mask, paired by seed (the same data and initial "
        f"weights), the mean over the seeds both ran and {NOISE_SE_WORDS} its standard error (the "
        "seed noise of that mean; none for one seed), on the complete samples (first "
        "line) and the one-modality samples (second).",
        "",
        "| rule | framework, seeds | complete: mask / no mask | one modality: mask / no mask | "
        "difference: complete, one |",
        "|---|---|---|---|---|",
    ]

    def median(rows, key, label, fw):
        seeds = rows.get((label, fw))
        return f"{np.median([r[key] for r in seeds.values()]):.3f}" if seeds else ""

    costly = []  # (label, framework, key) where the mask costs beyond the seed noise
    chance = []  # per comparison with a noise estimate: the probability of naming it by chance

    def paired(label, fw, key):
        got = _paired(mask.get((label, fw), {}), plain.get((label, fw), {}), key)
        if got is None:
            return ""
        d, mean, noise = got
        if noise is None:
            return f"{mean:+.3f}"
        chance.append(_chance(len(d)))
        if mean + noise < 0:
            costly.append((label, fw, key))
        return f"{mean:+.3f} ± {noise:.3f}"

    table_fws = [fw for fw in cfg["frameworks"] if fw in FRAMEWORKS]  # diagnoses: pooled only
    for label in (BASELINE, *cfg["rules"]):
        for fw in table_fws:
            if (label, fw) not in plain and (label, fw) not in mask:
                continue
            lines.append(
                f"| {_name(label, cell=True)} | {fw}, {len(mask.get((label, fw), {}))} / "
                f"{len(plain.get((label, fw), {}))} | {median(mask, 'accuracy', label, fw) or '-'} / "
                f"{median(plain, 'accuracy', label, fw) or '-'} | "
                f"{median(mask, 'accuracy_one', label, fw) or '-'} / "
                f"{median(plain, 'accuracy_one', label, fw) or '-'} | "
                f"{'<br>'.join(filter(None, (paired(label, fw, k) for k in ('accuracy', 'accuracy_one'))))} |"
            )

    def named(label, fw, key):
        return f"{_name(label)} {fw} ({'complete' if key == 'accuracy' else 'one modality'})"

    lines += ["", "Rows where the mask costs beyond the seed noise (the difference's mean "
              f"below 0 by more than {NOISE_SE_WORDS} its standard error): "
              + (", ".join(named(*c) for c in costly) if costly else "none") + "."]
    if chance:
        lines[-1] += (
            f" If the mask changed nothing, the expected number of these {len(chance)} "
            f"differences (rows with two or more seeds, on the two test sets) named by "
            f"chance would be {sum(chance):.1f}: the sum over them of the probability that "
            f"Student's t, with the row's seeds minus one degrees of freedom, falls below "
            f"-{NOISE_SE:g}."
        )
    again = {}
    for label, fw, key in costly:
        rows = [{s: r for s, r in by.get((label, fw), {}).items() if s in REPLICATION_SEEDS}
                for by in (_by(report, "missing_mask"), _without_mask(report))]
        got = _paired(*rows, key)
        if got is not None and got[2] is not None:
            d, mean, noise = got
            verdict = "named again" if mean + noise < 0 else "within the noise"
            seeds = sorted(set(rows[0]) & set(rows[1]))
            again[named(label, fw, key)] = (
                f"{mean:+.3f} ± {noise:.3f} on seeds {', '.join(map(str, seeds))}, {verdict}")
    if costly:
        lines += ["", "The named rows re-run on fresh seeds (a replication: a cost that the "
                  "first seeds show by chance should not come back): "
                  + "; ".join(f"{n}: {again.get(n, 'not re-run')}"
                              for n in (named(*c) for c in costly)) + "."]
    pooled = []

    def pooled_cell(fw, key, last):
        """Every default rule's paired differences of ``fw``: the final epoch's accuracy
        (``last`` None) or the mean of the last ``last`` epochs' evaluations."""
        d = []
        for (label, f), a in mask.items():
            b = plain.get((label, f), {})
            if f != fw or label == BASELINE or parse_rule(label)[1]:
                continue
            got = _paired(a, b, key, last)
            if got is not None:
                d.extend(got[0])
        d = np.array(d)
        if len(d) < 2:
            return None
        return f"{d.mean():+.4f} ± {_noise(d):.4f}", int((d < 0).sum()), len(d)

    for fw in cfg["frameworks"]:
        cells = []
        for key in ("accuracy", "accuracy_one"):
            final, late = pooled_cell(fw, key, None), pooled_cell(fw, key, POOL_EPOCHS)
            if final is not None:
                cells.append(f"{'complete' if key == 'accuracy' else 'one modality'} "
                             f"{final[0]} ({final[1]} of {final[2]} below 0; over the last "
                             f"{POOL_EPOCHS} epochs {late[0]})")
        if cells:
            pooled.append(f"{fw} {', '.join(cells)}")
    if pooled:
        lines += ["", "Pooled over the rules with their defaults (every paired run of the "
                  "first seeds, taken as independent; the rules share each seed's data): mask "
                  f"minus no mask, the mean and {NOISE_SE_WORDS} its standard error, of the final "
                  "accuracy and of the mean accuracy over the last epochs (less of one "
                  "evaluation's noise): "
                  + "; ".join(pooled) + "."]
        lines[-1] += "".join(f" {fw}: {DIAGNOSES[fw]} (a diagnosis, not in the table)."
                             for fw in cfg["frameworks"] if fw in DIAGNOSES)
    trainers = [fw for fw in cfg["frameworks"]
                if any(f == fw and (label, f) in plain for (label, f) in mask)]
    fresh = tuple(
        {k: {s: r for s, r in seeds.items() if s in REPLICATION_SEEDS} for k, seeds in by.items()}
        for by in (_by(report, "missing_mask"), _without_mask(report)))
    per_rule = (_per_rule_pooled(mask, plain, cfg["rules"], trainers, fresh)
                if len(trainers) > 1 else None)
    if per_rule is not None:
        lines += ["", per_rule]
    extended = markdown_extended(report)
    if extended is not None:
        lines += ["", extended]
    measured = {r["framework"] for r in report["results"]  # replication runs count here
                if r["scenario"] in ("missing_mask", "missing_no_mask")}
    absent = [fw for fw in table_fws if fw not in measured]
    if absent:
        lines += ["", f"Not measured in this scenario: {', '.join(absent)}."]
    return "\n".join(lines) + "\n"


def _per_rule_pooled(mask: dict, plain: dict, rules, trainers,
                     fresh: tuple[dict, dict] | None = None) -> str | None:
    """Each default rule's paired differences pooled over ``trainers`` (the frameworks and
    the diagnoses), of the mean accuracy over the last POOL_EPOCHS epochs: a cost that the
    rule keeps whatever the model around it, too small for one row's seeds, shows here.
    A label that sets only mask-only fields (``MASK_ONLY_FIELDS``) has its row too, and so
    does an earlier default (``EARLIER_DEFAULTS``). ``fresh``: the mask and no-mask runs
    of ``REPLICATION_SEEDS``; a named row is judged again on those, pooled over the
    trainers that ran them.
    None where no such label has two paired runs."""
    rows, costly, named = [], [], []
    for label in rules:
        if parse_rule(label)[1] and not (_mask_only(label) or label in EARLIER_DEFAULTS):
            continue
        cells = []
        for key in ("accuracy", "accuracy_one"):
            per = [got[0] for fw in trainers if (got := _paired(
                mask.get((label, fw), {}), plain.get((label, fw), {}), key, POOL_EPOCHS))]
            d = np.concatenate(per) if per else np.array([])
            if len(d) < 2:
                cells.append("-")
                continue
            below = sum(x.mean() < 0 for x in per)
            cells.append(f"{d.mean():+.4f} ± {_noise(d):.4f} ({int((d < 0).sum())} of {len(d)} "
                         f"runs, {below} of {len(per)} trainers)")
            if d.mean() + _noise(d) < 0:
                costly.append(f"{_name(label)} ({'complete' if key == 'accuracy' else 'one modality'})")
                named.append((label, key, costly[-1]))
        if any(c != "-" for c in cells):
            rows.append(f"| {_name(label, cell=True)} | {' | '.join(cells)} |")
    if not rows:
        return None
    return "\n".join([
        "Per rule, pooled over the trainers above (" + ", ".join(trainers) + "; every paired "
        "run of the first seeds, taken as independent): mask minus no mask of the mean "
        f"accuracy over the last {POOL_EPOCHS} epochs, the mean and {NOISE_SE_WORDS} its "
        "standard error (the paired runs below 0, and the trainers whose mean is). A cost "
        "that a rule keeps whatever the model around it, too small for one row's seeds, "
        "shows here.",
        "",
        "| rule | complete | one modality |",
        "|---|---|---|",
        *rows,
        "",
        "Below 0 beyond that noise: " + (", ".join(costly) if costly else "none") + ".",
        *_replicated(named, trainers, fresh),
    ])


def markdown_extended(report: dict) -> str | None:
    """The rows (label, trainer) run on ``EXTENDED_SEEDS``, each judged on every seed it
    ran (the first, the replication's and the extended ones): mask minus no mask of the
    mean over the last POOL_EPOCHS epochs, of the accuracy on both test sets, of the
    one-modality samples' present-class accuracy and of the complete samples' test loss
    (the last two recorded by later runs only: their own count). None where no row has
    such runs."""
    mask, plain = _by(report, "missing_mask"), _without_mask(report)
    keys = sorted(k for k, seeds in mask.items() if set(seeds) & set(EXTENDED_SEEDS)
                  and k in plain)
    if not keys:
        return None
    rows, grads = [], []
    for label, fw in keys:
        cells = [_late_cell(mask[(label, fw)], plain[(label, fw)], key)
                 for key in ("accuracy", "accuracy_one", "accuracy_present", "loss")]
        seeds = sorted(set(mask[(label, fw)]) & set(plain[(label, fw)]))
        rows.append(f"| {_name(label, cell=True)} | {fw}, {_seed_span(seeds)} | {' | '.join(cells)} |")
        ratio = [_gradient_ratio(mask[(label, fw)], plain[(label, fw)], tower, epochs)
                 for tower in ("grad_image", "grad_text") for epochs in GRADIENT_EPOCHS]
        if None not in ratio:
            grads.append(f"| {_name(label, cell=True)} | {fw} | "
                         + " | ".join(f"×{r:.2f}" for r in ratio) + " |")
    early, late = (f"{a + 1}-{b}" for a, b in GRADIENT_EPOCHS)
    against = _against_earlier(mask, keys)
    earlier = [
        "",
        "Today's default against its earlier one (the row's label), both with the mask, "
        "on the seeds both ran (the runs above): today's minus the earlier's, over the "
        "same last epochs (in brackets the paired runs where today's does worse).",
        "",
        "| earlier default | trainer, seeds | complete | one modality | test loss |",
        "|---|---|---|---|---|",
        *against,
    ] if against else []
    gradients = [
        "",
        "The image and text towers' gradient norms (on the first training batch, after "
        "each epoch): with the mask over without it, the geometric mean over the paired "
        f"runs of each run's mean over epochs {early} and over epochs {late}.",
        "",
        f"| rule | trainer | image, {early} | image, {late} | text, {early} | text, {late} |",
        "|---|---|---|---|---|---|",
        *grads,
    ] if grads else []
    return "\n".join([
        f"Rows re-run on more seeds ({_seed_span(EXTENDED_SEEDS)}), where the replication "
        "left the cost unsettled, each judged on every seed it ran: mask minus no mask of "
        f"the mean over the last {POOL_EPOCHS} epochs, the mean and {NOISE_SE_WORDS} its "
        "standard error (in brackets the paired runs where the mask does worse: a lower "
        "accuracy, a higher loss). Present class: the one-modality samples scored on the "
        "present modality's class alone (what they can tell; one modality scores the "
        "pair). The test loss is of the complete samples. The runs made before the present "
        "class or the loss was recorded leave them out (the bracket counts the rest).",
        "",
        "| rule | trainer, seeds | complete | one modality | present class | test loss |",
        "|---|---|---|---|---|---|",
        *rows,
        *earlier,
        *gradients,
    ])


def _late_cell(runs: dict, baseline: dict, key: str) -> str:
    """A cell of ``markdown_extended``'s tables: ``runs`` minus ``baseline`` (seed -> run)
    over the seeds both ran that record ``key``, of the mean over the last POOL_EPOCHS
    epochs, with its noise and the pairs where ``runs`` do worse; "-" under two pairs."""
    a, b = ({s: r for s, r in by.items() if key in r["history"]} for by in (runs, baseline))
    got = _paired(a, b, key, POOL_EPOCHS)
    if got is None or got[2] is None:
        return "-"
    d, mean, noise = got
    worse = d > 0 if key == "loss" else d < 0
    return f"{mean:+.4f} ± {noise:.4f} ({int(worse.sum())} of {len(d)})"


def _against_earlier(mask: dict, keys: list) -> list[str]:
    """Table rows of ``markdown_extended``: per earlier default (``EARLIER_DEFAULTS``)
    and trainer among ``keys``, its kind's mask runs minus its own on the seeds both
    ran, of the mean over the last POOL_EPOCHS epochs."""
    rows = []
    for label, fw in keys:
        kind = parse_rule(label)[0]
        if label not in EARLIER_DEFAULTS or (kind, fw) not in keys:
            continue
        cells = [_late_cell(mask[(kind, fw)], mask[(label, fw)], key)
                 for key in ("accuracy", "accuracy_one", "loss")]
        seeds = sorted(set(mask[(kind, fw)]) & set(mask[(label, fw)]))
        rows.append(f"| {_name(label, cell=True)} | {fw}, {_seed_span(seeds)} | "
                    f"{' | '.join(cells)} |")
    return rows


#: the epoch windows (first, past the last) of ``markdown_extended``'s gradient table
GRADIENT_EPOCHS = ((0, 5), (10, 20))


def _gradient_ratio(mask: dict, plain: dict, tower: str, epochs: tuple[int, int]):
    """The geometric mean over the seeds both ran of ``tower``'s gradient norm with the
    mask over without it, each run's norm its mean over ``epochs``; None where a run has
    no such norms (Keras off JAX) or fewer epochs."""
    a, b = epochs
    logs = []
    for seed in sorted(set(mask) & set(plain)):
        norms = [r["history"].get(tower) or [] for r in (mask[seed], plain[seed])]
        if any(len(n) < b or None in n[a:b] for n in norms):
            return None
        logs.append(np.log(np.mean(norms[0][a:b]) / np.mean(norms[1][a:b])))
    return float(np.exp(np.mean(logs))) if logs else None


def _seed_span(seeds) -> str:
    """``seeds 0-19`` for three or more consecutive seeds, else ``seeds 0, 2``."""
    seeds = sorted(seeds)
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"seeds {seeds[0]}-{seeds[-1]}"
    return "seeds " + ", ".join(map(str, seeds))


def _replicated(named, trainers, fresh) -> list[str]:
    """The per-rule rows ``named`` ((label, key, name)) judged again on the fresh seeds'
    runs ``fresh`` (mask, no mask), pooled over the trainers that ran them: the lines to
    add, none where no named row was re-run."""
    if not named or fresh is None:
        return []
    out = []
    for label, key, name in named:
        per = {fw: got[0] for fw in trainers if (got := _paired(
            fresh[0].get((label, fw), {}), fresh[1].get((label, fw), {}), key, POOL_EPOCHS))}
        d = np.concatenate(list(per.values())) if per else np.array([])
        if len(d) < 2:
            out.append(f"{name}: not re-run")
            continue
        verdict = "named again" if d.mean() + _noise(d) < 0 else "within the noise"
        seeds = sorted({s for fw in per for s in fresh[0][(label, fw)] if s in fresh[1][(label, fw)]})
        out.append(f"{name}: {d.mean():+.4f} ± {_noise(d):.4f} ({int((d < 0).sum())} of "
                   f"{len(d)} runs below 0; {', '.join(per)}; seeds "
                   f"{', '.join(map(str, seeds))}), {verdict}")
    return ["", "The named rows re-run on fresh seeds, pooled over the trainers that ran "
            "them: " + "; ".join(out) + "."]


def plot(report: dict, path) -> None:
    """Test accuracy per epoch (median over seeds) for each rule, one panel per framework."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = report["config"]
    rows = _by(report, "complete")
    frameworks = [fw for fw in cfg["frameworks"] if any(f == fw for (_, f) in rows)]
    fig, axes = plt.subplots(1, len(frameworks), figsize=(11, 4.2), sharey=True,
                             squeeze=False)
    for ax, fw in zip(axes[0], frameworks, strict=True):
        for i, label in enumerate((BASELINE, *cfg["rules"])):
            seeds = rows.get((label, fw))
            if not seeds:
                continue
            curves = np.array([seeds[s]["history"]["accuracy"] for s in sorted(seeds)])
            style = {"color": "black", "linewidth": 2.5} if label == BASELINE else {
                "color": f"C{i % 10}", "linewidth": 1.2}
            ax.plot(range(1, curves.shape[1] + 1), np.median(curves, axis=0),
                    label=label.split(":")[0] if label != BASELINE else "baseline", **style)
        ax.set_title(fw)
        ax.set_xlabel("epoch")
        ax.set_ylim(0, 1)
        ax.axhline(1 / 3, color="grey", linestyle=":")
    axes[0][0].set_ylabel("test accuracy (median over seeds)")
    axes[0][-1].legend(loc="lower right", fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def tables(report: dict, docs) -> tuple[tuple[str, str], ...]:
    """(marker, table) of ``docs/training.md``: the report's, and the energy-term runs
    of ``EAA_JSON`` (``energy_aware_adaptive`` with fields changed per row)."""
    import json

    eaa = json.loads((docs / "assets" / EAA_JSON).read_text())
    momentum = json.loads((docs / "assets" / MOMENTUM_JSON).read_text())
    return (("towers-complete", markdown_complete(report)),
            ("towers-missing", markdown_missing(report)),
            ("towers-eaa", markdown_one_field(eaa)),
            ("towers-momentum", markdown_momentum(report, momentum)))


#: runs of energy_aware_adaptive with fields changed (docs/assets/), made with
#: ``--rules 'energy_aware_adaptive:energy_weight=0.0' ... --json`` and merged
EAA_JSON = "train_towers_eaa.json"
#: the runs of the rules' defaults made while ``input_norm_momentum`` was 0.1 (relabelled
#: ``kind:input_norm_momentum=0.1``): training is the same, only the eval statistics differ
MOMENTUM_JSON = "train_towers_momentum.json"


def write_docs(report: dict, docs) -> None:
    """The tables between the ``towers`` markers of ``docs/training.md`` and the plot."""
    plot(report, docs / "assets" / "train_towers.png")
    page = docs / "training.md"
    text = page.read_text()
    for marker, table in tables(report, docs):
        begin, end = f"<!-- {marker}: begin -->", f"<!-- {marker}: end -->"
        if begin not in text:
            continue
        head, rest = text.split(begin)
        _, tail = rest.split(end)
        text = f"{head}{begin}\n{table}{end}{tail}"
    page.write_text(text)


def main(argv=None) -> int:
    import argparse
    import time as _time
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description="Two towers trained from scratch with each rule.")
    parser.add_argument("--rules", nargs="+", default=list(MEASURED),
                        help='kinds, or kind:field=value;... (JSON values), e.g. shomr:input_norm="none"')
    parser.add_argument("--frameworks", nargs="+", default=list(FRAMEWORKS), choices=tuple(TRAINERS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=tuple(SCENARIOS))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=2, help="training processes at a time")
    parser.add_argument("--shadow-momentum", type=float, default=None,
                        help="PyTorch: also evaluate with running statistics of this momentum "
                             "(history accuracy_shadow), from the same training run")
    parser.add_argument("--no-baseline", action="store_true",
                        help="leave the baseline's runs out (to merge with a report that has them)")
    parser.add_argument("--json", type=Path, default=root / "docs" / "assets" / "train_towers.json",
                        help="the report (resumed when it holds runs of the same config)")
    parser.add_argument("--merge", nargs="+", type=Path, default=None,
                        help="no training: merge these reports into --json (see merge())")
    parser.add_argument("--docs", action="store_true",
                        help="write docs/training.md's towers tables and the plot from the JSON")
    args = parser.parse_args(argv)
    start = _time.perf_counter()
    if args.merge:
        import json

        report = merge([json.loads(p.read_text()) for p in args.merge])
        args.json.write_text(dumps(report))
    else:
        report = run_all(args.rules, args.frameworks, args.seeds, args.scenarios, args.epochs,
                         args.jobs, args.json, baseline=not args.no_baseline,
                         shadow_momentum=args.shadow_momentum)
        print(f"wall {_time.perf_counter() - start:.0f} s")
    print(markdown_complete(report))
    if any(r["scenario"] == "missing_mask" for r in report["results"]):
        print(markdown_missing(report))
    if args.docs:
        write_docs(report, root / "docs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
