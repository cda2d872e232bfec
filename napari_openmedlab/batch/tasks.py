"""What a batch does to one case. A task is built once per worker (model loaded once) and then
called for many cases; its result is a JSON-able dict the driver writes to disk."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class BatchCase:
    name: str
    image: str
    labels: str | None = None


@dataclass
class EvalTask:
    """Simulated clicks on each case, exactly as ``openmedlab eval`` runs them."""

    model: str
    checkpoint: str | None = None
    device: str = "cpu"
    n_clicks: int = 5
    protocol: str = "largest-error"
    seed: int | None = None
    classes: list[int] | None = None
    _engine: object = field(default=None, repr=False, compare=False)

    kind = "eval"

    def needs_labels(self) -> bool:
        return True

    def setup(self) -> None:
        if self._engine is None:
            from ..engines import create_engine

            self._engine = create_engine(self.model, self.checkpoint, self.device)

    def __getstate__(self):  # ship the settings to a worker, never a loaded model
        state = dict(self.__dict__)
        state["_engine"] = None
        return state

    def run(self, case: BatchCase, out_dir: str) -> dict:
        from ..evaluation import runner
        from ..io import read_volume

        self.setup()
        t0 = time.perf_counter()
        rows = runner.evaluate_case(
            self._engine, read_volume(case.image), read_volume(case.labels), case=case.name,
            class_names=runner.load_class_names(case.labels), n_clicks=self.n_clicks,
            classes=self.classes, protocol=self.protocol, seed=self.seed, model=self.model,
        )
        scored = [r for r in rows if r.positive is not None]
        if not scored:
            raise ValueError(f"{case.name}: the labels hold none of the requested classes")
        last = {}
        for r in scored:
            last[(r.class_id)] = r.dice
        return {
            "case": case.name,
            "rows": [asdict(r) for r in rows],
            "mean_final_dice": float(sum(last.values()) / len(last)),
            "seconds": time.perf_counter() - t0,
        }


@dataclass
class AutosegTask:
    """Automatic pre-segmentation of each case from an nnU-Net v2 model folder."""

    model_folder: str
    folds: list[int] | None = None
    checkpoint: str = "checkpoint_final.pth"
    device: str = "cpu"
    _predictor: object = field(default=None, repr=False, compare=False)

    kind = "autoseg"

    def needs_labels(self) -> bool:
        return False

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_predictor"] = None
        return state

    def setup(self) -> None:
        if self._predictor is None:
            from ..autoseg import load_model_folder

            self._predictor = load_model_folder(self.model_folder, folds=self.folds,
                                                checkpoint=self.checkpoint, device=self.device)

    def run(self, case: BatchCase, out_dir: str) -> dict:
        import numpy as np

        from ..io import read_volume, write_volume

        self.setup()
        t0 = time.perf_counter()
        image = read_volume(case.image)
        labels = self._predictor.predict_volume(image)
        out = Path(out_dir) / "labels" / f"{case.name}.nii.gz"
        out.parent.mkdir(parents=True, exist_ok=True)
        write_volume(labels, out, labels=True)
        present = [int(v) for v in np.unique(labels.array) if v]
        return {"case": case.name, "output": str(out), "labels_present": present,
                "seconds": time.perf_counter() - t0}
