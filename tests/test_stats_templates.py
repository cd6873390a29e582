"""The numbers a replicate table prints and the template sets the zero-shot heads average (issue
#28), each against a value worked out by hand or by a textbook formula. Fast, no Ray: the mutation
run drives these (scripts/mutation.py)."""
from __future__ import annotations

import math
import os

import pytest
import torch
from torch.nn import functional as F

from clip_prompt_sweeps.errors import UserError
from reports.stats import ci_text, holm, mark, mean_ci, p_text, welch_p
from trainables.models.templates import CLIP_CIFAR_TEMPLATES, MAX_TEMPLATE_FILE, check_template, fill, template_set

# --- statistics ------------------------------------------------------------------------------------

T_975 = {1: 12.706204736, 2: 4.302652730, 3: 3.182446305, 9: 2.262157163}     # Student's t tables


@pytest.mark.parametrize("values", [[1.0, 2.0, 3.0], [0.5, 0.7], [0.1, 0.2, 0.4, 0.8], [0.3] * 4 + [0.31] * 6])
def test_mean_ci_is_the_t_interval(values):
    n = len(values)
    m = sum(values) / n
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))
    got = mean_ci(values)
    assert got[0] == pytest.approx(m) and got[2] == n
    assert got[1] == pytest.approx(T_975[n - 1] * sd / math.sqrt(n), rel=1e-8)


def test_below_two_values_there_is_no_interval():
    m, half, n = mean_ci([0.42])
    assert (m, n) == (0.42, 1) and math.isnan(half)
    m, half, n = mean_ci([])
    assert math.isnan(m) and math.isnan(half) and n == 0


def test_ci_text_is_in_percent_with_n():
    assert ci_text([0.8]) == "80.00 (n=1)"
    assert ci_text([0.79, 0.81]) == f"80.00 ± {100 * 12.706204736 * math.sqrt(0.0002) / math.sqrt(2):.2f} (n=2)"
    assert ci_text([0.5, 0.5, 0.5]) == "50.00 ± 0.00 (n=3)"


def _welch(a, b) -> float:
    """Welch's t and Welch-Satterthwaite's degrees of freedom, by the textbook."""
    from scipy.stats import t
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    va = sum((x - ma) ** 2 for x in a) / (len(a) - 1) / len(a)
    vb = sum((x - mb) ** 2 for x in b) / (len(b) - 1) / len(b)
    stat = (ma - mb) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return 2 * t.sf(abs(stat), df)


@pytest.mark.parametrize("a,b", [([1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.5]), ([0.80, 0.81, 0.79], [0.70, 0.74]),
                                 ([0.5, 0.6], [0.5, 0.6, 0.55, 0.52, 0.58])])
def test_welch_p_is_the_textbook_two_sided_p(a, b):
    assert welch_p(a, b) == pytest.approx(_welch(a, b), rel=1e-9)
    assert welch_p(b, a) == pytest.approx(welch_p(a, b))


def test_welch_p_where_it_is_undefined_or_there_is_no_spread():
    assert math.isnan(welch_p([1.0], [1.0, 2.0])) and math.isnan(welch_p([1.0, 2.0], [3.0]))
    assert welch_p([0.5, 0.5], [0.5, 0.5, 0.5]) == 1.0
    assert welch_p([0.5, 0.5], [0.6, 0.6]) == 0.0
    # one side without spread, the other with: the test itself, not the shortcut. t = 0.05 / 0.05
    # = 1 on 1 degree of freedom: p = 0.5
    assert welch_p([0.5, 0.5], [0.4, 0.5]) == pytest.approx(0.5)
    assert welch_p([0.5, 0.5], [0.4, 0.6]) == pytest.approx(1.0)


def test_holm_by_hand():
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> kept monotone: 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    got = holm([math.nan, 0.02, 0.5])           # nan is not counted: m = 2
    assert math.isnan(got[0]) and got[1:] == pytest.approx([0.04, 0.5])
    assert holm([0.6, 0.7]) == [1.0, 1.0]       # capped at 1
    assert holm([]) == [] and holm([0.2]) == [0.2]


def test_marks_and_p_text():
    assert [mark(p) for p in (math.nan, 0.0, 0.049, 0.05, 0.5)] == ["", "*", "*", "n.s.", "n.s."]
    assert [p_text(p) for p in (math.nan, 0.0, 0.000999, 0.001, 0.12345, 1.0)] == \
        ["—", "<0.001", "<0.001", "0.001", "0.123", "1.000"]


# --- template sets -------------------------------------------------------------------------------------

def test_template_sets():
    assert template_set("single", "a {} here") == ("a {} here",)
    assert template_set("clip", "ignored") == CLIP_CIFAR_TEMPLATES and len(CLIP_CIFAR_TEMPLATES) == 18
    assert all(t.count("{}") == 1 for t in CLIP_CIFAR_TEMPLATES)
    with pytest.raises(UserError, match=r"template_set 'clipp' unknown; known: single, clip, file:PATH"):
        template_set("clipp", "a {}")
    with pytest.raises(UserError, match="has no '{}' for the class name"):
        template_set("single", "a photo")


def test_a_template_is_one_brace_pair_filled_once_and_never_formatted():
    check_template("a {} photo", "class name")
    for bad in ("a {} of a {}", "a {0.__class__} {}", "a {} }", "{ {}"):
        with pytest.raises(UserError, match=r"must hold exactly one '\{\}' \(for the label\) and no other brace"):
            check_template(bad, "label")
    with pytest.raises(UserError, match=r"has no '\{\}' for the label; e.g. \"x {}\""):
        check_template("none", "label", example="x {}")
    assert fill("a {} of {x}", "{}") == "a {} of {x}"          # never str.format
    assert fill("a {} and {}", "cat") == "a cat and {}"         # the first '{}' only


def test_a_template_file_one_per_line(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("\n  a photo of a {}.  \n\nart of the {}\n")
    assert template_set(f"file:{path}", "x") == ("a photo of a {}.", "art of the {}")
    path.write_text("a photo of a {}\nno brace here\n")
    with pytest.raises(UserError, match=rf"template file {path}, line 2: template 'no brace here' has no '{{}}' for "
                                        rf"the class name"):
        template_set(f"file:{path}", "x")
    path.write_text("\n \n")
    with pytest.raises(UserError, match=rf"template file {path} holds no template; write one template per line"):
        template_set(f"file:{path}", "x")
    path.write_bytes(b"\xff\xfe{}")
    with pytest.raises(UserError, match=rf"template file {path} cannot be read"):
        template_set(f"file:{path}", "x")
    with pytest.raises(UserError, match=r"cannot be read \(No such file or directory\)"):
        template_set(f"file:{tmp_path / 'missing'}", "x")
    os.mkfifo(tmp_path / "fifo")            # never written to: opened without waiting, and refused
    with pytest.raises(UserError, match=r"fifo is not a regular file"):
        template_set(f"file:{tmp_path / 'fifo'}", "x")


def test_a_huge_template_file_is_refused_without_being_read(tmp_path):
    import resource
    path = tmp_path / "huge.txt"
    with open(path, "wb") as f:          # 2 GB on paper, nothing on disk (a sparse file)
        f.write(b"a photo of a {}\n")
        f.truncate(2 << 30)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(UserError, match="is more than 1,048,576 bytes"):
        template_set(f"file:{path}", "x")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000      # KiB: under 100 MB read


def test_a_template_file_is_read_to_its_limit_and_no_further(tmp_path):
    path = tmp_path / "t.txt"
    line = b"a photo of a {}\n"
    path.write_bytes(line * (MAX_TEMPLATE_FILE // len(line)))             # exactly at the limit: read
    assert len(template_set(f"file:{path}", "x")) == MAX_TEMPLATE_FILE // len(line)
    path.write_bytes(b"a photo of a {}" + b" " * (MAX_TEMPLATE_FILE - 15) + b"\n")
    assert os.path.getsize(path) == MAX_TEMPLATE_FILE + 1
    with pytest.raises(UserError, match=rf"template file {path} is more than 1,048,576 bytes"):
        template_set(f"file:{path}", "x")


class _Tokens(list):
    def to(self, device):
        return self


class _Text(torch.nn.Module):
    """A text encoder whose features are known: one vector per (template, class) text."""

    def __init__(self, table: dict[str, torch.Tensor]):
        super().__init__()
        self.table, self.weight = table, torch.nn.Parameter(torch.zeros(1))

    def encode_text(self, tokens):
        return torch.stack([self.table[t] for t in tokens])


def test_the_template_ensemble_is_clips_mean_of_normalised_features_normalised_again():
    from trainables.models.clip import Clip, class_text_features
    table = {"a cat": torch.tensor([3.0, 0.0, 0.0]), "a dog": torch.tensor([0.0, 2.0, 0.0]),
             "b cat": torch.tensor([0.0, 0.0, 5.0]), "b dog": torch.tensor([1.0, 1.0, 0.0])}
    clip = Clip(_Text(table), _Tokens, None)
    one = class_text_features(clip, ("cat", "dog"), "a {}")
    assert torch.allclose(one, torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    assert torch.allclose(class_text_features(clip, ("cat", "dog"), ("a {}",)), one)
    both = class_text_features(clip, ("cat", "dog"), ("a {}", "b {}"))
    r = 1 / math.sqrt(2)
    # cat: mean of (1,0,0) and (0,0,1), normalised; dog: mean of (0,1,0) and (r,r,0), normalised
    dog = torch.tensor([r, 1 + r, 0.0])
    expected = torch.stack([torch.tensor([r, 0.0, r]), dog / dog.norm()])
    assert torch.allclose(both, expected, atol=1e-6)
    assert torch.allclose(both.norm(dim=-1), torch.ones(2))
    three = class_text_features(clip, ("cat",), ("a {}", "b {}", "a {}"))
    assert torch.allclose(three[0], F.normalize(torch.tensor([2.0, 0.0, 1.0]), dim=0), atol=1e-6)
