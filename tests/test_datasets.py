"""Datasets beyond CIFAR, offline: an ImageFolder tree and torchvision's DTD in its own on-disk
format, both written here; each split prepared once per node at the backbone's input size,
learned above chance, reported; and every bad input in one line."""
import os

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from clip_prompt_sweeps.errors import UserError
from orchestrator.commands.cli import main
from orchestrator.sweep.plan import make_plan
from trainables.data.catalog import load_dataset, prepared_file, split_sizes, verify
from trainables.data.prepared import clean_class_name
from trainables.data.sources.folder import folder_splits
from trainables.experiments.linear_probe import LINEAR_PROBE
from trainables.experiments.zeroshot import ZEROSHOT

COLOURS = {"Red_Things": (200, 30, 30), "green-leaves": (30, 180, 40), "BlueSky": (40, 60, 210)}


def _image(rng, colour, size=(40, 48)) -> Image.Image:
    """A class's colour with noise, not square: the preparation resizes and crops it."""
    pixels = np.clip(np.array(colour) + rng.normal(0, 25, (*size[::-1], 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def write_folder(root, per_class=(12, 6), suffix=".png"):
    rng = np.random.default_rng(0)
    for split, n in zip(("train", "test"), per_class):
        for name, colour in COLOURS.items():
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                _image(rng, colour).save(root / split / name / f"{i}{suffix}")
    return root


def write_dtd(root):
    """torchvision's DTD layout (dtd/dtd/images/<class>/<file>, dtd/dtd/labels/{train,val,test}1.txt)
    under the data dir's dtd/ folder, where every torchvision dataset keeps its own layout."""
    rng = np.random.default_rng(1)
    base = root / "dtd" / "dtd" / "dtd"
    lines = {"train": [], "val": [], "test": []}
    for name, colour in {"banded": (220, 220, 40), "dotted": (40, 200, 200), "striped": (120, 40, 160)}.items():
        (base / "images" / name).mkdir(parents=True)
        for split, n in (("train", 10), ("val", 4), ("test", 5)):
            for i in range(n):
                file = f"{name}_{split}_{i:04d}.jpg"
                _image(rng, colour, (36, 30)).save(base / "images" / name / file)
                lines[split].append(f"{name}/{file}")
    (base / "labels").mkdir()
    for split, entries in lines.items():
        (base / "labels" / f"{split}1.txt").write_text("\n".join(entries) + "\n")
    return root


def _run(trainable, config):
    reports = []
    trainable.fn(config, report=lambda metrics, ckpt: reports.append(metrics))
    return reports[-1]


def _linear(dataset, data_dir, **extra):
    return dict(dataset=dataset, data="real", data_dir=str(data_dir), model="tiny-clip", pretrained="none",
                epochs=8, batch_size=16, lr=0.05, device="cpu", **extra)


def test_an_image_folder_is_prepared_once_learned_above_chance_with_clean_class_names(tmp_path):
    folder = write_folder(tmp_path / "shapes")
    data_dir = tmp_path / "data"
    metrics = _run(LINEAR_PROBE, _linear(f"folder:{folder}", data_dir))
    assert metrics["test_acc"] > 0.8            # chance is 1/3
    target = prepared_file(f"folder:{folder}", data_dir, "train", 32, "bicubic")
    assert target.is_file() and np.load(target, mmap_mode="r").shape == (36, 3, 32, 32)
    mtimes = {p: p.stat().st_mtime_ns for p in target.parent.glob("*.npy")}
    data = load_dataset(f"folder:{folder}", data_dir, "real", 32, "bicubic")      # a second trial
    assert {p: p.stat().st_mtime_ns for p in target.parent.glob("*.npy")} == mtimes
    assert data.classes == ("blue sky", "red things", "green leaves")       # folder order, as ImageFolder
    assert data.val is None and len(data.train.labels) == 36 and len(data.test.labels) == 18
    # a changed folder is prepared again
    _image(np.random.default_rng(5), COLOURS["BlueSky"]).save(folder / "train" / "BlueSky" / "new.png")
    assert len(load_dataset(f"folder:{folder}", data_dir, "real", 32, "bicubic").train.labels) == 37


def _tree_with_val_and_hidden_folders(root):
    """train/ (4 images a class), val/ (2), test/ (3); each split also holds the hidden folders a
    notebook or git leaves, with images in them."""
    rng = np.random.default_rng(2)
    for split, n in (("train", 4), ("val", 2), ("test", 3)):
        for name in (*COLOURS, ".ipynb_checkpoints", ".git"):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                _image(rng, COLOURS.get(name, (0, 0, 0)), (12, 10)).save(root / split / name / f"{i}.png")
    return root


def test_an_image_trees_val_folder_is_its_validation_split(tmp_path):
    """A tree with val/ gives the trials its validation split (the sweep's metric is measured
    on it), with the same classes, counted by the cost plan, not left out."""
    folder = _tree_with_val_and_hidden_folders(tmp_path / "tree")
    name = f"folder:{folder}"
    assert split_sizes(name, "real") == (12, 6, 9)
    data = load_dataset(name, tmp_path / "data", "real", 16, "bicubic")
    assert data.val is not None and len(data.val.labels) == 6
    assert sorted(data.val.labels.tolist()) == [0, 0, 1, 1, 2, 2]
    assert (len(data.train.labels), len(data.test.labels)) == (12, 9)


def test_hidden_folders_of_an_image_tree_are_not_classes(tmp_path):
    """`.ipynb_checkpoints` and `.git` inside train/, val/ and test/ are neither classes nor images."""
    folder = _tree_with_val_and_hidden_folders(tmp_path / "tree")
    splits = folder_splits(str(folder))
    assert not any(part.startswith(".") for items in splits.values() for path, _ in items
                   for part in path.relative_to(folder).parts)
    data = load_dataset(f"folder:{folder}", tmp_path / "data", "real", 16, "bicubic")
    assert data.classes == ("blue sky", "red things", "green leaves")
    assert set(data.train.labels.tolist()) == {0, 1, 2} and len(data.train.labels) == 12


def test_an_image_tree_is_found_where_it_is_and_recorded_by_its_path(tmp_path, monkeypatch):
    """The tree is used in place (nothing is downloaded or copied into the data dir): present
    where it lies, checked by `fetch`, without val/ it has no validation split, and its MLflow
    dataset record names its path."""
    import json

    from trainables.data.catalog import fetch, is_present, provenance, stored_at
    folder = write_folder(tmp_path / "shapes", (2, 1))
    name, data_dir = f"folder:{folder}", tmp_path / "data"
    assert is_present(name, data_dir) and stored_at(name, data_dir) == folder
    assert not is_present(f"folder:{tmp_path / 'elsewhere'}", data_dir)
    monkeypatch.setenv("HOME", str(tmp_path))           # a path as a user types it
    assert is_present("folder:~/shapes", data_dir) and stored_at("folder:~/shapes", data_dir) == folder
    assert split_sizes(name, "real") == (6, None, 3)
    fetch(name, data_dir)                               # a whole tree: nothing to say
    assert not data_dir.exists()
    data = load_dataset(name, data_dir, "real", 16, "bicubic")
    assert data.val is None and provenance(data) == ("local", json.dumps({"path": str(folder)}))
    os.rename(folder / "test", folder / "held-out")
    with pytest.raises(UserError, match="has no test/ folder"):
        fetch(name, data_dir)


def test_dtd_from_its_own_files_uses_its_validation_split_and_is_prepared_once(tmp_path):
    root = write_dtd(tmp_path / "data")
    metrics = _run(LINEAR_PROBE, _linear("dtd", root))
    assert metrics["test_acc"] > 0.8
    data = load_dataset("dtd", root, "real", 32, "bicubic")
    assert (len(data.train.labels), len(data.val.labels), len(data.test.labels)) == (30, 12, 15)
    assert data.classes == ("banded", "dotted", "striped")
    zs = _run(ZEROSHOT, dict(dataset="dtd", data="real", data_dir=str(root), model="tiny-clip", pretrained="none",
                             batch_size=16, device="cpu", template_set="clip"))
    assert 0 <= zs["test_acc"] <= 1 and zs["dataset"]["splits"] == {"train": 30, "test": 15}
    assert zs["dataset"]["name"] == "dtd" and "DTD" in zs["dataset"]["source"]


@pytest.mark.parametrize("case", ["missing", "no classes", "empty class", "unreadable", "mismatch", "no test"])
def test_bad_folders_are_one_line(tmp_path, case):
    folder = tmp_path / "f"
    expected = {"missing": "does not exist", "no classes": "has no class folders",
                "empty class": "holds no image", "unreadable": "cannot be read",
                "mismatch": "test/ and train/ have different classes (in one only: extra)",
                "no test": "has no test/ folder"}[case]
    if case != "missing":
        write_folder(folder, (2, 1))
    if case == "no classes":
        for d in (folder / "train").iterdir():
            for f in d.iterdir():
                f.unlink()
            d.rmdir()
    elif case == "empty class":
        (folder / "train" / "empty").mkdir()
        (folder / "test" / "empty").mkdir()
        (folder / "test" / "empty" / "a.png").write_bytes(b"")
    elif case == "unreadable":
        (folder / "test" / "BlueSky" / "broken.png").write_bytes(b"not a png")
        expected = f"image {folder / 'test' / 'BlueSky' / 'broken.png'} cannot be read"
    elif case == "mismatch":
        (folder / "test" / "extra").mkdir()
        _image(np.random.default_rng(0), (0, 0, 0)).save(folder / "test" / "extra" / "x.png")
    elif case == "no test":
        os.rename(folder / "test", folder / "elsewhere")
    with pytest.raises(UserError) as err:
        verify(f"folder:{folder}", tmp_path / "data")
    assert expected in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "data").exists()         # nothing written


def test_a_missing_torchvision_dataset_offline_says_how_to_fetch_it_and_synthetic_is_cifar_only(tmp_path):
    with pytest.raises(UserError) as err:
        verify("food101", tmp_path)
    assert "fetch --datasets food101" in str(err.value) and "downloads are disabled" in str(err.value)
    with pytest.raises(UserError, match="synthetic data exists for cifar10 and cifar100 only"):
        make_plan("linear", "smoke", ["dataset=dtd"])
    with pytest.raises(UserError, match="dataset 'imagenet' unknown; use cifar10, cifar100, stl10"):
        make_plan("linear", "smoke", ["dataset=imagenet"])


def test_class_names_are_cleaned_for_prompts():
    assert clean_class_name("apple_pie") == "apple pie"
    assert clean_class_name("AnnualCrop") == "annual crop"
    assert clean_class_name("SeaLake") == "sea lake"
    assert clean_class_name("american_pit_bull_terrier") == "american pit bull terrier"
    assert clean_class_name("Abyssinian") == "abyssinian"
    assert clean_class_name("UK-roads") == "UK roads"


def test_a_folder_and_dtd_sweep_as_a_grid_axis_and_are_reported(ray_session, tmp_path):
    folder = write_folder(tmp_path / "shapes")
    data_dir = write_dtd(tmp_path / "data")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    common = ["--tracking-uri", uri, "--storage-path", str(tmp_path / "ray"), "--gpus-per-trial", "0",
              "--data-dir", str(data_dir)]
    assert main(["sweep", "linear", "--grid", f"dataset=folder:{folder},dtd", "--set", "data=real",
                 "--samples", "1", *common]) == 0
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("linear").experiment_id], "tags.role = 'trial'")
    assert sorted(r.inputs.dataset_inputs[0].dataset.name for r in runs) == sorted(["dtd", f"folder:{folder}"])
    assert main(["report", "linear", "--tracking-uri", uri, "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "linear" / "report.md").read_text()
    assert f"| folder:{folder} |" in md and "| dtd |" in md


def test_each_way_an_image_tree_is_not_a_dataset_is_its_one_line(tmp_path):
    from trainables.data.sources.folder import folder_splits
    fix = "lay it out as PATH/train/<class>/<image> and PATH/test/<class>/<image>"
    root = tmp_path / "tree"

    def refused() -> str:
        with pytest.raises(UserError) as err:
            folder_splits(str(root))
        return str(err.value)
    assert refused() == f"dataset folder {root} does not exist; {fix}"
    (root / "test").mkdir(parents=True)
    assert refused() == f"dataset folder {root} has no train/ folder; {fix}"
    (root / "test").rmdir()
    (root / "train").mkdir()
    assert refused() == f"dataset folder {root} has no test/ folder; {fix}"
    (root / "test").mkdir()
    (root / "train" / ".hidden").mkdir()
    assert refused() == f"dataset folder {root / 'train'} has no class folders; {fix}"
    for name in ("b", "a", "c", "d", "e", "f", "g"):
        (root / "train" / name).mkdir()
    (root / "test" / "a").mkdir()
    assert refused() == (f"dataset folder {root}: test/ and train/ have different classes (in one only: b, c, d, e, f); "
                         f"give both the same class folders")
    for name in ("b", "c", "d", "e", "f", "g"):
        (root / "test" / name).mkdir()
    assert refused() == (f"class folder {root / 'train' / 'a'} holds no image "
                         f"(.bmp, .gif, .jpeg, .jpg, .png, .ppm, .tif, .tiff, .webp); add images or remove the folder")
    for split in ("train", "test"):
        for name in ("a", "b", "c", "d", "e", "f", "g"):
            (root / split / name / "x.PNG").write_bytes(b"png")
            (root / split / name / "notes.txt").write_text("not an image")
            (root / split / name / "dir.png").mkdir()
    found = folder_splits(str(root))
    assert set(found) == {"train", "test"}
    assert found["train"] == [(root / "train" / n / "x.PNG", i) for i, n in enumerate("abcdefg")]   # labels by sorted name
