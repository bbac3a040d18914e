"""Exporting a trained model: safetensors weights, TorchScript, and ONNX (``export`` extra)."""

from __future__ import annotations

import copy
import io
import json
import logging
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from lenetish.catalog import DATASETS, EXPORT_FORMATS
from lenetish.data.identity import recorded_dataset
from lenetish.errors import InvalidArgumentError, MissingDependencyError
from lenetish.losses import class_scores, output_kind, recorded_output_kind
from lenetish.saving.checkpoint import atomic_write, save_weights

__all__ = ["EXPORT_FORMATS", "METADATA_FILE", "export_model"]

logger = logging.getLogger("lenetish")


def export_model(
    model: nn.Module, path: str | os.PathLike[str], *, format: str = "safetensors"
) -> Path:
    """Write ``model`` for use elsewhere, in one of five formats.

    * ``"safetensors"``: the weights only (load them with :func:`~lenetish.load_weights`),
      with the network's class and, when known, its dataset.
    * ``"state_dict"``: a plain state dict, ``torch.save(model.state_dict(), path)`` with the
      tensors on the CPU: the blog post's script, or any code doing
      ``model.load_state_dict(torch.load(path))`` with the same class, loads it. It records
      nothing else (no dataset: normalise inputs as the training data was).
    * ``"pt2"``: a :func:`torch.export` program (``torch.export.load``), batch size dynamic.
    * ``"torchscript"``: a traced TorchScript module (``torch.jit.load``); PyTorch deprecates
      TorchScript in favour of ``torch.export``, so prefer ``"pt2"`` for new work.
    * ``"onnx"``: an ONNX graph with input ``images`` ``(batch, 1, 28, 28)`` (any batch size)
      and one output ``(batch, classes)`` named after what the model returns
      (``log_probabilities``, ``logits`` or ``probabilities``); needs the ``export`` extra.

    The three graph formats carry what a consumer needs besides the graph: what the output
    is, the normalisation (``mean``, ``std`` of pixels scaled to ``[0, 1]``), the class
    names and the dataset (MNIST's, marked ``dataset_assumed``, when the model records
    none). ONNX keeps them as ``lenetish.<key>`` metadata properties, pt2 and TorchScript as
    the JSON file ``lenetish.json`` among their extra files.

    Args:
        model: the trained network (a CPU copy in eval mode is exported; the model itself is
            not changed).
        path: the file to write, atomically in every format: a failed export leaves no
            partial or temporary file, and any earlier file at ``path`` as it was.
        format: ``"safetensors"``, ``"state_dict"``, ``"pt2"``, ``"torchscript"`` or
            ``"onnx"``.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        InvalidArgumentError: ``format`` is unknown.
        UnsupportedModelError: a graph format (``"pt2"``, ``"torchscript"``, ``"onnx"``) of a
            model whose forward returns a tuple or a dict, not one tensor of class scores.
        MissingDependencyError: ONNX export without the ``export`` extra installed.
        CheckpointError: the file cannot be written (e.g. the disk is full).

    Example:
        >>> import tempfile
        >>> from lenetish import MNISTConvNet
        >>> path = export_model(MNISTConvNet(), f"{tempfile.mkdtemp()}/m.pt", format="state_dict")
        >>> MNISTConvNet().load_state_dict(torch.load(path))
        <All keys matched successfully>
    """
    if format not in EXPORT_FORMATS:
        raise InvalidArgumentError(
            f"format={format!r} is not supported; use one of {', '.join(EXPORT_FORMATS)}"
        )
    target = Path(path)
    if format == "safetensors":
        save_weights(model, target)
        return target
    if format == "state_dict":
        weights = {name: t.detach().cpu().clone() for name, t in model.state_dict().items()}
        atomic_write(target, lambda handle: torch.save(weights, handle))
        return target
    # Export a CPU copy in the default memory layout: the user's model is left as it was.
    cpu_model = copy.deepcopy(model).to("cpu").to(memory_format=torch.contiguous_format).eval()
    example = torch.zeros(2, 1, 28, 28)
    metadata = _metadata(cpu_model, who=type(model).__name__)
    extra = {METADATA_FILE: json.dumps(metadata)}
    if format == "pt2":
        program = torch.export.export(
            cpu_model, (example,), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},)
        )
        # Serialised in memory first: torch's archive writer aborts the whole process (a C++
        # terminate) when a write to a file fails, e.g. on a full disk; our own write raises.
        buffer = io.BytesIO()
        torch.export.save(program, buffer, extra_files=extra)
        atomic_write(target, lambda handle: handle.write(buffer.getbuffer()))
    elif format == "torchscript":
        with warnings.catch_warnings():
            # The input-shape check is constant in a traced graph, as intended, and the
            # deprecation is documented above.
            warnings.filterwarnings("ignore", message="Converting a tensor to a Python")
            warnings.filterwarnings("ignore", category=FutureWarning, module="torch.jit")
            traced = torch.jit.trace(cpu_model, example)  # type: ignore[no-untyped-call]
            atomic_write(target, lambda handle: torch.jit.save(traced, handle, _extra_files=extra))
    else:
        _export_onnx(cpu_model, example, target, metadata)
    return target


#: The name of the JSON metadata inside pt2 and TorchScript files (``extra_files``).
METADATA_FILE = "lenetish.json"


def _metadata(model: nn.Module, *, who: str) -> dict[str, str]:
    """What a consumer of an exported graph needs besides the graph: outputs and inputs.

    ``output``: what the graph returns (``log_probabilities``, ``logits`` or
    ``probabilities``, detected on a fixed random batch); ``dataset``, ``mean``, ``std``,
    ``classes``: the training data's record (``mean``/``std`` normalise raw pixels scaled to
    ``[0, 1]``), or MNIST's when the model records none (then ``dataset_assumed`` is
    ``"true"``, and a log line says so); ``preparation``: how an image file was made into a
    picture (:data:`lenetish.catalog.PREPARATIONS`); ``input``: the input contract in words.

    Raises:
        UnsupportedModelError: the model returns a tuple or a dict, not one tensor.
    """
    images = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # the graph's one output is the class scores: refuse a tuple or dict
        kind = recorded_output_kind(model) or output_kind(
            class_scores(model(images), who=who).float()
        )
    recorded = recorded_dataset(model)
    if recorded is None:
        logger.info("lenetish: %s records no dataset; the export says MNIST's (assumed)", who)
    info = recorded or DATASETS["mnist"]
    return {
        "output": kind,
        "dataset": info.name,
        "dataset_assumed": "true" if recorded is None else "false",
        "mean": repr(info.mean),
        "std": repr(info.std),
        "classes": json.dumps(list(info.classes)),
        "preparation": info.image_preparation,
        "input": (
            "float32 (batch, 1, 28, 28): raw pixels scaled to [0, 1] (light on dark, as the "
            "dataset), then (x - mean) / std"
        ),
    }


def _export_onnx(
    model: nn.Module, example: torch.Tensor, target: Path, metadata: dict[str, str]
) -> None:
    """Write one self-contained ``.onnx`` file (weights and ``metadata`` inside), atomically.

    The output is named after what it holds (``metadata["output"]``), and every metadata
    entry becomes a ``lenetish.<key>`` metadata property of the model.
    """
    try:
        import onnx  # noqa: F401  (the exporter needs both)
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            "ONNX export needs onnx and onnxscript; install them with "
            "pip install 'lenetish[export]' (in a lenetish checkout: pip install '.[export]')"
        ) from exc
    program = torch.onnx.export(
        model,
        (example,),
        input_names=["images"],
        output_names=[metadata["output"]],
        dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
        dynamo=True,
        verbose=False,
    )
    assert program is not None  # dynamo=True without a file name returns the program
    # The weights are stored inside the protobuf (a model this size is far below its 2 GB
    # limit), so the file works wherever it is copied; nothing is written beside it.
    proto = program.model_proto
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = f"lenetish.{key}", value
    payload = proto.SerializeToString()
    atomic_write(target, lambda handle: handle.write(payload))
