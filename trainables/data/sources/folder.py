"""The image-folder source: `folder:PATH`, an ImageFolder tree with `train/` and `test/` (and, if
it has one, `val/`) class folders, prepared once per node (trainables/data/prepared.py)."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from clip_prompt_sweeps.errors import UserError
from trainables.data.dataset import ImageDataset
from trainables.data.prepared import clean_class_name, prepared_splits
from trainables.data.sources import Source

FOLDER_PREFIX = "folder:"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"}


def folder_splits(path: str) -> dict[str, list[tuple[Path, int]]]:
    """split -> [(image file, label)] of an ImageFolder tree, checked: train/ and test/ exist, each
    has the same class folders, and every class folder holds at least one image."""
    root = Path(path).expanduser()
    fix = "lay it out as PATH/train/<class>/<image> and PATH/test/<class>/<image>"
    if not root.is_dir():
        raise UserError(f"dataset folder {root} does not exist; {fix}")
    found = {s: root / s for s in ("train", "val", "test") if (root / s).is_dir()}
    for needed in ("train", "test"):
        if needed not in found:
            raise UserError(f"dataset folder {root} has no {needed}/ folder; {fix}")
    classes = {s: sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
               for s, folder in found.items()}
    if not classes["train"]:
        raise UserError(f"dataset folder {root / 'train'} has no class folders; {fix}")
    for split, names in classes.items():
        if names != classes["train"]:
            only = sorted(set(names) ^ set(classes["train"]))
            raise UserError(f"dataset folder {root}: {split}/ and train/ have different classes "
                            f"(in one only: {', '.join(only[:5])}); give both the same class folders")
    out = {}
    for split, folder in found.items():
        items = []
        for label, name in enumerate(classes["train"]):
            files = sorted(p for p in (folder / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not files:
                raise UserError(f"class folder {folder / name} holds no image ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                                f"add images or remove the folder")
            items += [(p, label) for p in files]
        out[split] = items
    return out


def folder_classes(path: str) -> list[str]:
    root = Path(path).expanduser() / "train"
    return sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def _fingerprint(items: list[tuple[Path, int]]) -> str:
    """What the prepared file was made from: each image's path, label, size, mtime, inode and ctime,
    so a changed folder is prepared again. The ctime (which no user can set back, unlike the
    mtime) and the inode catch an image replaced in place or by a rename with its mtime kept."""
    h = hashlib.blake2b(digest_size=16)
    for path, label in items:
        st = path.stat()
        h.update(f"{path}\0{label}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\0{st.st_ctime_ns}\n".encode())
    return h.hexdigest()



def _path(name: str) -> str:
    return name[len(FOLDER_PREFIX):]


class ImageFolder(Source):
    pattern = f"{FOLDER_PREFIX}PATH (an ImageFolder tree with train/ and test/)"
    path_prefix = FOLDER_PREFIX

    def owns(self, name: str) -> bool:
        return name.startswith(FOLDER_PREFIX)

    def counts(self, name: str, kind: str) -> tuple[int, int | None, int]:
        found = folder_splits(_path(name))
        return len(found["train"]), (len(found["val"]) if "val" in found else None), len(found["test"])

    def key(self, name: str) -> str:
        """The folder's own name and a digest of its whole path."""
        path = str(Path(_path(name)).expanduser().resolve())
        slug = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(path).name).strip("-")[:40] or "folder"
        return f"folder-{slug}-{hashlib.sha1(path.encode()).hexdigest()[:10]}"

    def where(self, name: str, root: Path, kind: str) -> Path:
        return Path(_path(name)).expanduser()

    def present(self, name: str, root: Path, kind: str) -> bool:
        return self.where(name, root, kind).is_dir()

    def fetch(self, name: str, root: Path, kind: str) -> None:
        folder_splits(_path(name))          # nothing to download: the tree is checked

    def verify(self, name: str, root: Path, kind: str) -> None:
        """The tree and every image's header: an unreadable image is named in one line."""
        from PIL import Image
        for items in folder_splits(_path(name)).values():
            for path, _ in items:
                try:
                    with Image.open(path) as image:
                        image.size
                except Exception as err:  # noqa: BLE001 - any decoder error of an untrusted file
                    raise UserError(f"image {path} cannot be read ({err}); remove or replace it") from None

    def load(self, name: str, root: Path, kind: str, size: int, interpolation: str) -> ImageDataset:
        sources = folder_splits(_path(name))
        classes = tuple(clean_class_name(c) for c in folder_classes(_path(name)))
        made_from = {s: _fingerprint(items) for s, items in sources.items()}
        loaders = {s: (lambda items=items: items) for s, items in sources.items()}
        splits = prepared_splits(root, self.key(name), name, size, interpolation, made_from, loaders, len(classes))
        return ImageDataset(name, classes, splits["train"], splits["test"], "real", val=splits.get("val"))

    def provenance(self, data: ImageDataset) -> tuple[str, str]:
        return "local", json.dumps({"path": _path(data.name)})


SOURCE = ImageFolder()
