"""Free-form CLIP tasks: a template and labels classify a folder of images or CIFAR-100 test
images, and a figure shows each image with its label probabilities."""
import numpy as np
import pytest
import torch
from PIL import Image

from clip_prompt_sweeps.errors import UserError
from orchestrator.commands.cli import main
from trainables.experiments.freeform import (
    PRESETS,
    Task,
    image_files,
    probabilities_for_files,
    task_from,
)
from trainables.models.clip import load_clip


def _folder(tmp_path, n=3):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)][:n]):
        Image.fromarray(np.full((40, 60 + 10 * i, 3), colour, np.uint8)).save(folder / f"{i}.png")
    return folder


def test_classify_a_folder_writes_a_figure_and_a_line_per_image(tmp_path, capsys):
    folder = _folder(tmp_path)
    assert main(["classify", "--preset", "colour", "--images", str(folder), "--model", "tiny-clip",
                 "--pretrained", "none", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.endswith(tuple("0123456789")) and ".png" in line]
    assert [line.split()[0] for line in lines] == ["0.png", "1.png", "2.png"]
    figure = tmp_path / "out" / "classify" / "colour.png"
    with Image.open(figure) as im:
        assert im.size[0] > 300 and im.size[1] > 300


def test_classify_cifar100_test_images_with_a_template_of_ones_own(data_root, tmp_path, capsys):
    assert main(["classify", "--template", "a photo of something {}", "--labels", "alive", "not alive",
                 "--data", "synthetic", "--data-dir", str(data_root), "--n", "4", "--model", "tiny-clip",
                 "--pretrained", "none", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert sum(line.startswith("#") for line in out.splitlines()) == 4
    # a task of one's own gets a name of its own: it can never replace a preset's figure
    (figure,) = (tmp_path / "out" / "classify").glob("custom-a-photo-of-something-*.png")
    rows = figure.with_suffix(".csv").read_text().splitlines()
    assert rows[0] == "image,predicted,alive,not alive" and len(rows) == 5
    assert not (tmp_path / "out" / "classify" / "colour.png").exists()


def test_probabilities_are_a_distribution_over_the_labels(tmp_path):
    clip = load_clip("tiny-clip", "none")
    probs = probabilities_for_files(clip, sorted(_folder(tmp_path).iterdir()), Task(*PRESETS["origin"]))
    assert probs.shape == (3, 2)
    torch.testing.assert_close(probs.sum(-1), torch.ones(3))


def test_presets_are_the_seeds_tasks():
    assert task_from("colour", None, None) == Task("This is an image mostly coloured {}", ("red", "green", "blue"))
    assert task_from("origin", None, None).labels == ("human-made", "from-nature")


def test_an_unreadable_image_is_named(tmp_path):
    folder = _folder(tmp_path, 1)
    (folder / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(UserError, match=r"broken\.jpg is not an image PIL can read"):
        probabilities_for_files(load_clip("tiny-clip", "none"), image_files(folder), Task(*PRESETS["origin"]))
