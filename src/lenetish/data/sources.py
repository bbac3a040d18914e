"""Where a dataset's idx files come from: a folder, $LENETISH_DATA, the cache, or the bundled MNIST.

MNIST ships inside the package (``lenetish/datasets/mnist/``, the four canonical gzip files,
about 11 MB), so training works right after ``pip install`` with no network. The bundled files
are checked against the SHA-256 sums recorded here the first time a process reads them.
Fashion-MNIST and KMNIST are not bundled: torchvision downloads them into the data folder.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from lenetish.errors import DatasetCorruptError, DatasetNotFoundError, InvalidArgumentError

if TYPE_CHECKING:
    from lenetish.data.identity import DatasetInfo

__all__ = [
    "BUNDLED_MNIST_SHA256",
    "DataSource",
    "bundled_mnist",
    "default_root",
    "expand_folder",
    "resolve_source",
]

SPLIT_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

#: SHA-256 of each bundled file: the canonical MNIST files (Y. LeCun, C. Cortes, C. J. C. Burges).
BUNDLED_MNIST_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte.gz": (
        "0b367032e93c5d0cea0925647cfdb18614af8ee15f83e6f2fc2ad904a6835971"
    ),
    "train-labels-idx1-ubyte.gz": (
        "1787548bbe0bff1ec2ecdc0ef292b02df999e2d1a6002d27500982c652b17203"
    ),
    "t10k-images-idx3-ubyte.gz": "1a1a05eab793c14bb050b398624a11b0ffd1a2953baed553b1b9bd079e2a20be",
    "t10k-labels-idx1-ubyte.gz": "b91679a0acfe4ba0e50a2437a903084cba1f5f92592b016a25a7dfd00455798b",
}

SourceKind = Literal["root", "environment", "cache", "bundled", "images", "arrays", "dataset"]

_DESCRIPTIONS: dict[str, str] = {
    "root": "the folder given",
    "environment": "$LENETISH_DATA",
    "cache": "the user cache folder",
    "bundled": "the copy bundled with lenetish",
    "images": "the folder of images given",
    "arrays": "the arrays given",
    "dataset": "the Dataset given",
}
_IN_MEMORY = ("arrays", "dataset")

_verified: set[Path] = set()  # bundled files whose hash this process has already checked


@dataclass(frozen=True)
class DataSource:
    """Where lenetish reads (or downloads) a dataset's idx files.

    Attributes:
        kind: ``"root"`` (the ``root`` argument, ``--data`` on the command line),
            ``"environment"`` (``$LENETISH_DATA``), ``"cache"`` (the user cache folder, see
            :func:`~lenetish.default_root`), ``"bundled"`` (the MNIST copy inside the package),
            ``"images"`` (a folder of class sub-folders of images), ``"arrays"`` or
            ``"dataset"`` (data given in memory, see :mod:`lenetish.data.own`).
        folder: the folder the files are looked for in (empty for data in memory).

    Example:
        >>> from pathlib import Path
        >>> from lenetish.data.sources import DataSource
        >>> str(DataSource("root", Path("/data")))
        'the folder given (/data)'
    """

    kind: SourceKind
    folder: Path

    def __str__(self) -> str:
        if self.kind in _IN_MEMORY:
            return _DESCRIPTIONS[self.kind]
        return f"{_DESCRIPTIONS[self.kind]} ({self.folder})"


def _no_home() -> DatasetNotFoundError:
    return DatasetNotFoundError(
        "there is no user cache folder for the data: HOME is not set and this user has no "
        "home folder in the passwd database; set LENETISH_DATA (or XDG_CACHE_HOME, or HOME) to "
        "a folder, or pass root= (--data DIR)"
    )


def expand_folder(folder: str | os.PathLike[str]) -> Path:
    """``folder`` with a leading ``~`` expanded.

    Args:
        folder: a data folder as given (``root=``, ``--data``, ``$LENETISH_DATA``).

    Returns:
        The folder as a path.

    Raises:
        DatasetNotFoundError: it starts with ``~`` and the user's home folder is unknown
            (HOME unset, no passwd entry).

    Example:
        >>> from lenetish.data.sources import expand_folder
        >>> str(expand_folder("/data/mnist"))
        '/data/mnist'
    """
    try:
        return Path(folder).expanduser()
    except RuntimeError:  # "Could not determine home directory."
        raise _no_home() from None


def _cache_folder() -> Path | None:
    """``lenetish`` in the user's cache folder, or None when there is no home to hold one."""
    cache = os.environ.get("XDG_CACHE_HOME")
    try:
        return (Path(cache) if cache else Path.home() / ".cache").expanduser() / "lenetish"
    except RuntimeError:  # HOME unset and no passwd entry (e.g. a container's random uid)
        return None


def default_root() -> Path:
    """Return the data folder used when none is given.

    ``$LENETISH_DATA`` if set, else ``lenetish`` under the user's cache folder
    (``$XDG_CACHE_HOME`` or ``~/.cache``). MNIST is read from there only when the folder
    holds its files; otherwise from the copy bundled with lenetish (the loaders say which in
    :attr:`Loaders.source <lenetish.Loaders.source>`).

    Returns:
        The folder (which need not exist yet).

    Raises:
        DatasetNotFoundError: neither ``$LENETISH_DATA`` nor ``$XDG_CACHE_HOME`` is set and
            the user's home folder is unknown (HOME unset, no passwd entry).

    Example:
        >>> import os
        >>> from unittest import mock
        >>> with mock.patch.dict(os.environ, {"LENETISH_DATA": "/data/lenetish"}):
        ...     str(default_root())
        '/data/lenetish'
        >>> with mock.patch.dict(os.environ):
        ...     _ = os.environ.pop("LENETISH_DATA", None)
        ...     default_root().name  # a folder of its own in the user's cache
        'lenetish'
    """
    if os.environ.get("LENETISH_DATA"):
        return expand_folder(os.environ["LENETISH_DATA"])
    cache = _cache_folder()
    if cache is None:
        raise _no_home()
    return cache


def bundled_mnist() -> Path:
    """Return the folder of the MNIST files shipped inside the package.

    Returns:
        ``.../site-packages/lenetish/datasets/mnist``, holding the four canonical ``.gz`` files.
    """
    # A real folder for an installed wheel or a checkout (the package is never zipped).
    return Path(str(importlib.resources.files("lenetish") / "datasets" / "mnist"))


def candidate_folders(root: Path, info: DatasetInfo) -> list[Path]:
    """Folders that may hold the idx files: torchvision's layout first, then flat ones."""
    return [root / info.torchvision_name / "raw", root / info.name, root]


def _find_file(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        try:
            found = (folder / name).exists()
        except OSError as exc:  # not "missing" (that is False): no permission, name too long
            raise DatasetNotFoundError(
                f"the data folder {folder} cannot be searched for {name} "
                f"({exc.strerror or exc}); make it readable, or give another folder (root=, "
                "--data DIR, or LENETISH_DATA)"
            ) from exc
        if found:
            return folder / name
    return None


def find_split(root: Path, info: DatasetInfo, train: bool) -> tuple[Path, Path] | None:
    """Return the image and label files of a split if one folder holds both."""
    images_stem, labels_stem = SPLIT_FILES[train]
    for folder in candidate_folders(root, info):
        images, labels = _find_file(folder, images_stem), _find_file(folder, labels_stem)
        if images is not None and labels is not None:
            return images, labels
    return None


def folder_for_auto(
    root: Path, datasets: Sequence[DatasetInfo], fallback: DatasetInfo
) -> DatasetInfo:
    """Which dataset's folders ``root`` holds, for ``dataset="auto"`` (its files tell the rest).

    A dataset's own sub-folder (``root/FashionMNIST/raw``, ``root/fashion-mnist``) holding a
    split decides; files directly in ``root`` (or none at all) are looked for as ``fallback``'s.

    Raises:
        InvalidArgumentError: ``root`` holds the sub-folders of several datasets.
    """
    held = [
        info
        for info in datasets
        if any(
            _find_file(folder, SPLIT_FILES[train][1]) is not None
            for folder in candidate_folders(root, info)[:-1]
            for train in (True, False)
        )
    ]
    if len(held) > 1:
        raise InvalidArgumentError(
            f"{root} holds the files of several datasets ({', '.join(i.name for i in held)}), so "
            "dataset='auto' cannot choose; pass dataset= (or --dataset) with one of them"
        )
    return held[0] if held else fallback


def _holds_dataset(root: Path, info: DatasetInfo) -> bool:
    """Whether ``root`` holds both splits of ``info``'s dataset."""
    return all(find_split(root, info, train) is not None for train in (True, False))


def resolve_source(root: str | os.PathLike[str] | None, info: DatasetInfo) -> DataSource:
    """Decide where a dataset's files are read from.

    ``root`` always wins. Without it, Fashion-MNIST and KMNIST use :func:`default_root` (and
    are downloaded there when missing). MNIST is read from ``$LENETISH_DATA``, else from the
    user cache folder, whichever first holds all four files, else from the bundled copy: it
    is never downloaded unless a folder is given.

    Args:
        root: the folder given by the caller, or ``None``.
        info: the dataset.

    Returns:
        The chosen :class:`DataSource`.

    Raises:
        DatasetNotFoundError: a folder to look in cannot be searched (no permission), or a
            dataset other than MNIST has no folder to go to (no ``root``, no
            ``$LENETISH_DATA``, and no home folder for the user cache).
    """
    if root is not None:
        return DataSource("root", expand_folder(root))
    environment = os.environ.get("LENETISH_DATA")
    cache = _cache_folder()  # None without a home folder: the bundled MNIST needs none
    folders = [] if cache is None else [DataSource("cache", cache)]
    if environment:
        folders.insert(0, DataSource("environment", expand_folder(environment)))
    if info.name != "mnist":
        if not folders:
            raise _no_home()
        return folders[0]
    for source in folders:
        if _holds_dataset(source.folder, info):
            return source
    return DataSource("bundled", bundled_mnist())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_if_bundled(path: Path) -> None:
    """Check a file of the bundled folder against its recorded SHA-256, once per process.

    Files elsewhere are left alone (their contents are still checked as idx files when read).

    Raises:
        DatasetCorruptError: the file's hash differs from the recorded one.
    """
    folder = bundled_mnist()
    if path.parent.resolve() != folder.resolve() or path.resolve() in _verified:
        return
    expected = BUNDLED_MNIST_SHA256.get(path.name)
    if expected is None:
        raise DatasetCorruptError(
            f"{path} is not one of the files bundled with lenetish "
            f"({', '.join(BUNDLED_MNIST_SHA256)}); remove it, or reinstall lenetish "
            "(pip install --force-reinstall lenetish)"
        )
    actual = _sha256(path)
    if actual != expected:
        raise DatasetCorruptError(
            f"{path} is damaged: its SHA-256 is {actual}, but the MNIST file bundled with "
            f"lenetish should have {expected}; reinstall lenetish "
            "(pip install --force-reinstall lenetish), or pass root=/--data with your own copy"
        )
    _verified.add(path.resolve())


def missing_bundled(train: bool) -> DatasetNotFoundError:
    """The error for a bundled MNIST folder that lacks a split's files (a broken install)."""
    folder = bundled_mnist()
    files = ", ".join(stem + ".gz" for stem in SPLIT_FILES[train])
    return DatasetNotFoundError(
        f"the MNIST copy bundled with lenetish is incomplete: {folder} lacks {files}; "
        "reinstall lenetish (pip install --force-reinstall lenetish), or pass root=/--data with "
        "your own copy"
    )


def not_found(
    root: Path, info: DatasetInfo, train: bool, reason: str, *, from_root: bool
) -> DatasetNotFoundError:
    """The error for a split that is neither in ``root`` nor downloadable."""
    folders = ", ".join(str(f) for f in candidate_folders(root, info))
    files = ", ".join(SPLIT_FILES[train])
    bundled = (
        "; or leave root/--data out to use the MNIST copy bundled with lenetish"
        if from_root and info.name == "mnist"
        else ""
    )
    return DatasetNotFoundError(
        f"{info.name} {'train' if train else 'test'} files not found ({reason}); looked in "
        f"{folders} for {files} (raw or .gz). Pass root=/path/to/files (or --data DIR, or set "
        f"LENETISH_DATA) to use local copies, or download=True with internet access{bundled}"
    )


def download(root: Path, info: DatasetInfo, train: bool = True) -> None:
    """Download (and check) one split's two files into ``root/<Name>/raw``.

    The files, their MD5 sums and the mirrors are torchvision's for the dataset; only the
    split asked for is fetched (scoring a model needs no training images). Everything is
    fetched into a temporary folder first and moved into ``root`` only once every file has
    arrived and passed its check, so a failed download leaves ``root`` exactly as it was (no
    ``MNIST/raw`` folder, no partial file, not even ``root`` itself when it did not exist).

    Raises:
        RuntimeError: every mirror failed for a file (each mirror's error in the message).
    """
    import shutil
    import tempfile

    import torchvision.datasets
    from torchvision.datasets.utils import download_and_extract_archive

    dataset_class = getattr(torchvision.datasets, info.torchvision_name)
    prefix = "train" if train else "t10k"
    with tempfile.TemporaryDirectory(prefix="lenetish-download-") as staging:
        for filename, md5 in dataset_class.resources:
            if not filename.startswith(prefix):
                continue
            errors = []
            for mirror in dataset_class.mirrors:
                try:
                    download_and_extract_archive(
                        f"{mirror}{filename}", download_root=staging, filename=filename, md5=md5
                    )
                    break
                except Exception as exc:  # the next mirror, and every error in the message
                    errors.append(f"{mirror}: {exc}")
            else:
                raise RuntimeError(f"could not download {filename}: " + "; ".join(errors))
        raw = root / info.torchvision_name / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        for fetched in sorted(Path(staging).iterdir()):
            shutil.move(str(fetched), str(raw / fetched.name))


def locate_split(
    source: DataSource, info: DatasetInfo, train: bool, *, download_missing: bool
) -> tuple[Path, Path]:
    """Return a split's image and label files from ``source``, downloading them if allowed.

    Raises:
        DatasetNotFoundError: the files are absent and could not (or may not) be downloaded,
            or the bundled copy is incomplete.
        DatasetCorruptError: a bundled file's SHA-256 differs from the recorded one.
    """
    files = find_split(source.folder, info, train)
    if files is None and source.kind == "bundled":
        raise missing_bundled(train)
    if files is None:
        from_root = source.kind == "root"
        if not download_missing:
            raise not_found(source.folder, info, train, "download=False", from_root=from_root)
        try:
            download(source.folder, info, train)
        except Exception as exc:  # any failure of the network or the mirrors
            reason = f"download failed: {exc}"
            raise not_found(source.folder, info, train, reason, from_root=from_root) from exc
        files = find_split(source.folder, info, train)
        if files is None:
            reason = "the download did not produce them"
            raise not_found(source.folder, info, train, reason, from_root=from_root)
    for path in files:
        verify_if_bundled(path)
    return files
