"""One fold: staged training with RMSProp, best-epoch selection on validation, early stopping, resume.

Determinism: every epoch starts from seeds derived from ``(seed, fold, epoch)`` (global torch RNG for dropout, a
CPU ``torch.Generator`` for batch order, views and augmentation), and the weights, optimizer state, RNG state and
counters are saved at each epoch boundary. A run killed mid-fold and restarted therefore continues from its last
finished epoch and ends with the same numbers as an uninterrupted run (on CPU, bit for bit).

Crash safety: after each epoch the weights and optimizer state go to files named by epoch, then ``state.json``
(the commit point) is replaced atomically; older epoch files are removed only afterwards.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from gsscreen.training import run_folder as rf
from gsscreen.training.config import StudyConfig
from gsscreen.training.data import derive_seed
from gsscreen.training.losses import StudyLoss

log = logging.getLogger("gsscreen.study")


class Source(Protocol):
    def train_batch(self, rows: np.ndarray, generator: torch.Generator) -> torch.Tensor: ...

    def eval_batch(self, rows: np.ndarray) -> list[torch.Tensor]: ...


@dataclass
class ModelPlan:
    """How the network is built and which parts train.

    ``input_index``: index in ``GSNet.body`` where inputs enter (0 = images; k = cached output of ``body[:k]``).
    ``unfreeze_from``: first body index trained in stage 2 (``len(body)`` = the body never trains).
    ``init_seed``: torch seed set before ``create_model`` (the same for all folds, so a random-init frozen body
    matches the one the feature cache was computed with).
    ``update_batchnorm``: trained stages of a *pretrained* body re-estimate BatchNorm statistics from batches
    (False: they keep the imported ones; see ``FineTuneConfig.update_batchnorm``).
    """

    backbone: str
    pretrained: bool
    dropout: float
    input_index: int
    unfreeze_from: int
    init_seed: int
    update_batchnorm: bool = False

    def build(self) -> nn.Module:
        from gsscreen.models.registry import create_model

        torch.manual_seed(self.init_seed)
        return create_model(self.backbone, pretrained=self.pretrained, dropout=self.dropout)


@dataclass
class FoldData:
    """Inputs of one fold. Rows index the study photos (``y``) or each external set's photos."""

    source: Source
    y: np.ndarray
    train_rows: np.ndarray
    val_rows: np.ndarray
    test_rows: np.ndarray
    externals: dict[str, tuple[Source, int]] = field(default_factory=dict)  # name -> (source, n photos)


class TrainNet(nn.Module):
    """``GSNet`` seen from ``body[input_index]`` on: frozen modules run in eval mode without gradients."""

    def __init__(self, model: nn.Module, plan: ModelPlan) -> None:
        super().__init__()
        self.model = model
        self.plan = plan
        self.n_body = len(model.body)  # type: ignore[arg-type]
        self.stage = 1
        self.set_stage(1)

    @property
    def has_stage2(self) -> bool:
        return self.plan.unfreeze_from < self.n_body

    def trainable_body(self) -> list[int]:
        return list(range(self.plan.unfreeze_from, self.n_body)) if self.stage == 2 else []

    def set_stage(self, stage: int) -> None:
        self.stage = stage
        trainable = set(self.trainable_body())
        for i in range(self.plan.input_index, self.n_body):
            for p in self.model.body[i].parameters():  # type: ignore[index]
                p.requires_grad_(i in trainable)
        for p in self.model.head.parameters():  # type: ignore[union-attr]
            p.requires_grad_(True)
        self.train(self.training)

    def train(self, mode: bool = True) -> TrainNet:
        super().train(mode)
        trainable = set(self.trainable_body())
        frozen_bn = bool(getattr(self.model.spec, "frozen_batchnorm", False))  # type: ignore[union-attr]
        # Imported statistics stay (VGG-Face's BNs are identities holding the conv biases): batch statistics of a
        # small cohort would make the network stop being the pretrained one at the first step.
        frozen_bn = frozen_bn or (bool(getattr(self.model, "pretrained_loaded", False))
                                  and not self.plan.update_batchnorm)
        for i in range(self.n_body):
            m = self.model.body[i]  # type: ignore[index]
            if i not in trainable:
                m.eval()  # frozen stages keep their (pretrained) batch-norm statistics
            elif frozen_bn:
                for sub in m.modules():
                    if isinstance(sub, nn.modules.batchnorm._BatchNorm):
                        sub.eval()
        return self

    def checkpoint_prefixes(self) -> tuple[str, ...]:
        """state_dict prefixes (of GSNet) of every part that can train in some stage."""
        return ("head.", *(f"body.{i}." for i in range(self.plan.unfreeze_from, self.n_body)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        trainable = set(self.trainable_body())
        body = self.model.body  # type: ignore[union-attr]
        i = self.plan.input_index
        with torch.no_grad():
            while i < self.n_body and i not in trainable:
                x = body[i](x)
                i += 1
        while i < self.n_body:
            x = body[i](x)
            i += 1
        return self.model.head(x)  # type: ignore[operator]


def make_optimizer(net: TrainNet, cfg: StudyConfig) -> torch.optim.Optimizer:
    """RMSProp over the head (lr) and the stage-2 body stages (lr × body_lr_factor).

    Parameters frozen in the current stage have no gradient and RMSProp skips them, so one optimizer serves both
    stages (and its state resumes as a whole).
    """
    o = cfg.train.optim
    groups = [{"params": list(net.model.head.parameters()), "lr": o.lr}]  # type: ignore[union-attr]
    body_params = [
        p for i in range(net.plan.unfreeze_from, net.n_body) for p in net.model.body[i].parameters()  # type: ignore[index]
    ]
    if body_params:
        groups.append({"params": body_params, "lr": o.lr * cfg.train.finetune.body_lr_factor})
    return torch.optim.RMSprop(groups, lr=o.lr, alpha=o.alpha, eps=o.eps, weight_decay=o.weight_decay,
                               momentum=o.momentum)


@torch.inference_mode()
def predict(
    net: TrainNet, source: Source, rows: np.ndarray, batch_size: int, device: torch.device, autocast: bool,
    y: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """P(GS) ``(len(rows),)`` averaged over the source's evaluation views; and the mean CE on the plain view
    (``nan`` when ``y`` is None)."""
    was = net.training
    net.eval()
    probs, loss_sum = [], 0.0
    try:
        for s in range(0, len(rows), batch_size):
            r = rows[s : s + batch_size]
            views = source.eval_batch(r)
            p = torch.zeros(len(r), dtype=torch.float32)
            for j, v in enumerate(views):
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                    logits, _ = net(v.to(device))
                logits = logits.float()
                p += torch.softmax(logits, dim=1)[:, 1].cpu()
                if j == 0 and y is not None:
                    t = torch.from_numpy(y[r]).to(device)
                    loss_sum += float(F.cross_entropy(logits, t, reduction="sum"))
            probs.append((p / len(views)).numpy())
    finally:
        net.train(was)
    p_all = np.concatenate(probs) if probs else np.zeros(0, dtype=np.float32)
    return p_all.astype(np.float64), (loss_sum / max(len(rows), 1) if y is not None else math.nan)


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    from gsscreen.evaluation.metrics import auc_mann_whitney

    return auc_mann_whitney(y, p) if 0 < int(y.sum()) < len(y) else math.nan


def _better(metric: str, auc: float, loss: float, best: dict[str, float] | None) -> bool:
    """Does (auc, loss) beat the best so far? ``auc``: higher AUC, ties (or nan) to the lower loss."""
    if best is None:
        return True
    eps = 1e-12
    if metric == "auc" and not (math.isnan(auc) or math.isnan(best["auc"])):
        if auc > best["auc"] + eps:
            return True
        if auc < best["auc"] - eps:
            return False
    return loss < best["loss"] - eps


@dataclass
class FoldRunner:
    """Trains and evaluates one fold into ``folds/fold_k`` (resuming from its files when present)."""

    cfg: StudyConfig
    plan: ModelPlan
    data: FoldData
    fold: int
    run_dir: Path
    device: torch.device
    progress: bool = False
    on_epoch_end: Callable[[int, int], None] | None = None

    @property
    def dir(self) -> Path:
        return rf.fold_dir(self.run_dir, self.fold)

    @property
    def autocast(self) -> bool:
        return self.device.type == "cuda" and self.cfg.mixed_precision

    def _meta(self, epoch: int) -> dict[str, Any]:
        return {
            "backbone": self.plan.backbone,
            "pretrained": self.plan.pretrained,
            "dropout": self.plan.dropout,
            "init_seed": self.plan.init_seed,
            "unfreeze_from": self.plan.unfreeze_from,
            "fold": self.fold,
            "epoch": epoch,
            "image_size": self.cfg.image_size,
        }

    def run(self) -> dict[str, Any]:
        """Train (or resume) then evaluate; returns the fold's result (also written to ``result.json``)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        result_path = self.dir / rf.RESULT
        if result_path.is_file():
            log.info("fold %d: already done, skipped", self.fold)
            return rf.read_json(result_path)
        model = self.plan.build()
        net = TrainNet(model, self.plan).to(self.device)
        if self.device.type == "cuda" and self.cfg.channels_last:
            net = net.to(memory_format=torch.channels_last)
        opt = make_optimizer(net, self.cfg)
        state = self._train(net, opt)
        return self._finish(net, state)

    # ----------------------------------------------------------------------------------------------- training

    def _resume(self, net: TrainNet, opt: torch.optim.Optimizer) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        state_path = self.dir / rf.STATE
        if not state_path.is_file():
            return {"epoch": 0, "best": None, "best_epoch": 0, "bad_epochs": 0, "finished": False}, []
        state = rf.read_json(state_path)
        e = state["epoch"]
        if e > 0:
            tensors, _ = rf.load_weights(self.dir / f"last_e{e}.safetensors")
            net.model.load_state_dict(tensors, strict=False)
            saved = rf.load_torch(self.dir / f"optimizer_e{e}.pt")
            opt.load_state_dict(saved["optimizer"])
            torch.set_rng_state(saved["torch_rng"])
        hist = pd.read_csv(self.dir / rf.HISTORY).to_dict("records") if (self.dir / rf.HISTORY).is_file() else []
        hist = [h for h in hist if int(h["epoch"]) <= e]
        if not state.get("finished"):
            log.info("fold %d: resuming after epoch %d (best epoch %d)", self.fold, e, state["best_epoch"])
        return state, hist

    def _save_epoch(
        self, net: TrainNet, opt: torch.optim.Optimizer, state: dict[str, Any], hist: list[dict[str, Any]]
    ) -> None:
        e = state["epoch"]
        prefixes = net.checkpoint_prefixes()
        rf.save_weights(self.dir / f"last_e{e}.safetensors", rf.trainable_state(net.model, prefixes), self._meta(e))
        rf.save_torch(self.dir / f"optimizer_e{e}.pt", {"optimizer": opt.state_dict(),
                                                         "torch_rng": torch.get_rng_state()})
        rf.atomic_write_csv(self.dir / rf.HISTORY, pd.DataFrame(hist))
        rf.atomic_write_json(self.dir / rf.STATE, state)  # the commit point
        for old in [*self.dir.glob("last_e*.safetensors"), *self.dir.glob("optimizer_e*.pt")]:
            if old.name not in (f"last_e{e}.safetensors", f"optimizer_e{e}.pt"):
                old.unlink(missing_ok=True)

    def _train(self, net: TrainNet, opt: torch.optim.Optimizer) -> dict[str, Any]:
        cfg, d = self.cfg, self.data
        tc = cfg.train
        loss_fn = StudyLoss(tc.triplet_weight, tc.triplet_margin)
        state, hist = self._resume(net, opt)
        if state.get("finished"):
            return state
        head_epochs = tc.finetune.head_epochs if net.has_stage2 else tc.epochs
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=tc.epochs, initial=state["epoch"], desc=f"fold {self.fold}", unit="epoch", leave=False)
        for epoch in range(state["epoch"] + 1, tc.epochs + 1):
            t0 = time.perf_counter()
            stage = 1 if epoch <= head_epochs else 2
            if stage == 2 and state.get("stage", 1) == 1:
                state["bad_epochs"] = 0  # stage 2 gets its own patience
            state["stage"] = stage
            net.set_stage(stage)
            net.train()
            torch.manual_seed(derive_seed(cfg.seed, "fold", self.fold, "epoch", epoch, "dropout"))
            gen = torch.Generator().manual_seed(derive_seed(cfg.seed, "fold", self.fold, "epoch", epoch, "batches"))
            order = d.train_rows[torch.randperm(len(d.train_rows), generator=gen).numpy()]
            bs = tc.batch_size
            starts = list(range(0, len(order), bs))
            if len(starts) > 1 and len(order) - starts[-1] < 2:
                starts.pop()  # a 1-photo last batch breaks batch norm and has no triplets: drop it
            sums = {"loss": 0.0, "ce": 0.0, "triplet": 0.0, "correct": 0.0, "n": 0}
            for s in starts:
                rows = order[s : s + bs]
                x = d.source.train_batch(rows, gen).to(self.device)
                if x.ndim == 4 and self.device.type == "cuda" and cfg.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                y = torch.from_numpy(d.y[rows]).to(self.device)
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                    logits, emb = net(x)
                loss, parts = loss_fn(logits.float(), emb.float(), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                n = len(rows)
                sums["loss"] += float(loss.detach()) * n
                sums["ce"] += parts["ce"] * n
                sums["triplet"] += parts["triplet"] * n
                sums["correct"] += float((logits.argmax(1) == y).sum())
                sums["n"] += n
            n = max(sums["n"], 1)
            p_val, val_loss = predict(net, d.source, d.val_rows, bs * 2, self.device, self.autocast, d.y)
            val_auc = _auc(d.y[d.val_rows], p_val)
            improved = _better(tc.select_metric, val_auc, val_loss, state["best"])
            if improved:
                state["best"] = {"auc": val_auc, "loss": val_loss}
                state["best_epoch"] = epoch
                state["bad_epochs"] = 0
                rf.save_weights(self.dir / rf.CHECKPOINT, rf.trainable_state(net.model, net.checkpoint_prefixes()),
                                self._meta(epoch))
            else:
                state["bad_epochs"] += 1
            hist.append({
                "epoch": epoch, "stage": stage, "train_loss": sums["loss"] / n, "train_ce": sums["ce"] / n,
                "train_triplet": sums["triplet"] / n, "train_acc": sums["correct"] / n, "val_loss": val_loss,
                "val_auc": val_auc, "improved": improved, "seconds": round(time.perf_counter() - t0, 3),
            })
            state["epoch"] = epoch
            stop = tc.patience > 0 and state["bad_epochs"] >= tc.patience and (stage == 2 or not net.has_stage2)
            state["finished"] = stop or epoch == tc.epochs
            self._save_epoch(net, opt, state, hist)
            log.info(
                "fold %d epoch %d done: stage %d, train loss %.4f, val loss %.4f, val AUC %.4f%s",
                self.fold, epoch, stage, sums["loss"] / n, val_loss, val_auc, " (best)" if improved else "",
            )
            if bar is not None:
                bar.update(1)
                bar.set_postfix(val_auc=f"{val_auc:.3f}", best=state["best_epoch"])
            if self.on_epoch_end is not None:
                self.on_epoch_end(self.fold, epoch)
            if stop:
                log.info("fold %d: early stop after epoch %d (best epoch %d)", self.fold, epoch, state["best_epoch"])
                break
        if bar is not None:
            bar.close()
        return state

    # ----------------------------------------------------------------------------------------------- evaluation

    def _finish(self, net: TrainNet, state: dict[str, Any]) -> dict[str, Any]:
        from gsscreen.evaluation.metrics import binary_metrics, choose_threshold

        cfg, d = self.cfg, self.data
        tensors, meta = rf.load_weights(self.dir / rf.CHECKPOINT)
        net.model.load_state_dict(tensors, strict=False)
        net.set_stage(2 if net.has_stage2 else 1)
        bs = cfg.train.batch_size * 2
        p_val, _ = predict(net, d.source, d.val_rows, bs, self.device, self.autocast)
        p_test, _ = predict(net, d.source, d.test_rows, bs, self.device, self.autocast)
        y_val, y_test = d.y[d.val_rows], d.y[d.test_rows]
        # The threshold comes from validation only; the test subset never influences it.
        threshold = choose_threshold(y_val, p_val, cfg.threshold_method)
        frames = [
            pd.DataFrame({"set": "val", "row": d.val_rows, "y": y_val, "p_gs": p_val}),
            pd.DataFrame({"set": "test", "row": d.test_rows, "y": y_test, "p_gs": p_test}),
        ]
        external: dict[str, dict[str, Any]] = {}
        for name, (src, n) in d.externals.items():
            rows = np.arange(n)
            p_ext, _ = predict(net, src, rows, bs, self.device, self.autocast)
            called = int((p_ext >= threshold).sum())
            external[name] = {"n": n, "called_gs": called, "fpr": called / n if n else math.nan,
                              "mean_p_gs": float(p_ext.mean()) if n else math.nan}
            frames.append(pd.DataFrame({"set": f"external:{name}", "row": rows, "y": 0, "p_gs": p_ext}))
        preds = pd.concat(frames, ignore_index=True)
        preds["call"] = (preds["p_gs"] >= threshold).astype(int)
        rf.atomic_write_csv(self.dir / rf.FOLD_PREDICTIONS, preds)
        result = {
            "fold": self.fold,
            "epochs_run": state["epoch"],
            "best_epoch": int(meta.get("epoch", state["best_epoch"])),
            "best_val": state["best"],
            "threshold": threshold,
            "threshold_method": cfg.threshold_method,
            "val": binary_metrics(y_val, p_val, threshold),
            "test": binary_metrics(y_test, p_test, threshold),
            "external": external,
        }
        rf.atomic_write_json(self.dir / rf.RESULT, result)
        log.info(
            "fold %d: best epoch %d, threshold %.4f, test AUC %.4f, accuracy %.4f",
            self.fold, result["best_epoch"], threshold, result["test"]["auc"], result["test"]["accuracy"],
        )
        return result
