import re

from hypothesis import given
from hypothesis import strategies as st

from registry.diff import NO_NEWLINE, VersionContent, content_text, unified_diff, version_diff

HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
texts = st.lists(st.sampled_from(["a", "b", "c", "", "{{x}}", "ü"]), max_size=12).map("\n".join) | st.text(
    max_size=40
)


def apply_patch(old: str, patch: str) -> str:
    """Apply a unified diff as `patch` would (enough of it for these diffs)."""
    old_lines = old.split("\n")
    old_lines = [line + "\n" for line in old_lines[:-1]] + ([old_lines[-1]] if old_lines[-1] else [])
    lines = patch.split("\n")[2:]
    result: list[str] = []
    position = 0
    previous = ""
    for line in lines:
        if match := HUNK.match(line):
            start = int(match.group(1)) - (0 if match.group(2) == "0" else 1)
            result.extend(old_lines[position:start])
            position = start
        elif line.startswith("+"):
            result.append(line[1:] + "\n")
        elif line.startswith("-"):
            position += 1
        elif line.startswith(" "):
            result.append(line[1:] + "\n")
            position += 1
        elif line == NO_NEWLINE.rstrip("\n") and previous[:1] in ("+", " "):
            result[-1] = result[-1].removesuffix("\n")
        previous = line
    result.extend(old_lines[position:])
    return "".join(result)


@given(old=texts, new=texts)
def test_applying_the_content_diff_to_the_old_text_gives_the_new_text(old, new):
    patch = unified_diff(old, new, old_name="v1", new_name="v2")

    assert apply_patch(old, patch) == new if patch else old == new


@given(text=texts)
def test_a_text_compared_with_itself_has_an_empty_diff(text):
    assert unified_diff(text, text, old_name="v1", new_name="v2") == ""


def test_a_missing_final_newline_shows_in_the_diff():
    patch = unified_diff("a\n", "a", old_name="v1", new_name="v2")

    assert patch == "--- v1\n+++ v2\n@@ -1 +1 @@\n-a\n+a\n\\ No newline at end of file\n"


@given(config=st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=6))
def test_config_key_order_never_shows_in_a_diff(config):
    reordered = dict(reversed(list(config.items())))
    old = VersionContent(version=1, template="t", messages=None, model="m", config=config)
    new = VersionContent(version=2, template="t", messages=None, model="m", config=reordered)

    diff = version_diff(old, new)

    assert diff.identical
    assert (diff.from_version, diff.to_version) == (1, 2)


def test_chat_messages_are_compared_as_role_headed_blocks():
    old = VersionContent(
        version=1, template=None, messages=[{"role": "system", "content": "Be brief"}], model="m", config={}
    )
    new = VersionContent(
        version=3,
        template=None,
        messages=[{"role": "system", "content": "Be brief"}, {"role": "user", "content": "{{q}}"}],
        model="m2",
        config={"temperature": 1},
    )

    diff = version_diff(old, new)

    assert content_text(new) == "[system]\nBe brief\n[user]\n{{q}}\n"
    assert diff.content_diff.endswith("+[user]\n+{{q}}\n")
    assert '+  "temperature": 1\n' in diff.config_diff
    assert diff.model_changed and (diff.from_model, diff.to_model) == ("m", "m2")
    assert not diff.identical
