"""What counts as a visible character (validation.is_visible), and the two rules built on it and on
control characters: a text needs a visible character, a scope value holds no control character
(C0, DEL or C1)."""

from __future__ import annotations

import pytest

from milvus_memory_mcp.errors import InvalidInput
from milvus_memory_mcp.validation import check_scope, check_text, has_visible_char

INVISIBLE = {
    "empty": "",
    "spaces and newlines": " \n\t\r ",
    "no-break and ideographic spaces (Zs)": "\u00a0\u3000\u2007",
    "line and paragraph separators (Zl, Zp)": "\u2028\u2029",
    "C0 and C1 controls (Cc)": "\x1c\x1f\x85\x9b",
    "zero-width space and BOM (Cf)": "\u200b\u200b\ufeff",
    "joiners, bidi marks, soft hyphen (Cf)": "\u200c\u200d\u200e\u202e\u00ad\u2060",
    "tag characters (Cf)": "\U000e0041\U000e007f",
    "combining acute accents alone (Mn)": "\u0301\u0301",
    "variation selector (Mn)": "\ufe0f",
    "enclosing circle alone (Me)": "\u20dd",
    "Hangul fillers": "\u3164\u115f\u1160\uffa0",
}
VISIBLE = {
    "a letter after invisible ones": "\u200b\ufeffLikes tea",
    "a decomposed accent": "e\u0301",
    "a digit": "\u200b7",
    "punctuation": "\u3000.",
    "an emoji with a joiner": "\U0001f469\u200d\U0001f4bb",
    "CJK": "\u559c\u6b22\u8336",
    "a private-use character": "\ue000",
}


@pytest.mark.parametrize("text", INVISIBLE.values(), ids=INVISIBLE.keys())
def test_a_text_without_a_visible_character_is_refused_as_empty(text: str) -> None:
    assert not has_visible_char(text)
    with pytest.raises(InvalidInput, match=r"^The memory text is empty \(it has no visible character\)"):
        check_text(text, 8192)


@pytest.mark.parametrize("text", VISIBLE.values(), ids=VISIBLE.keys())
def test_a_text_with_one_visible_character_is_kept_as_given(text: str) -> None:
    assert has_visible_char(text)
    assert check_text(f"  {text}\n", 8192) == text.strip()  # whitespace around it stripped, as before


@pytest.mark.parametrize("char", ["\x80", "\x85", "\x9b", "\x9f", "\x00", "\x1b", "\x7f", "\t", "\n"])
@pytest.mark.parametrize("field", ["user_id", "agent_id", "run_id"])
def test_a_scope_value_with_a_control_character_is_refused(field: str, char: str) -> None:
    with pytest.raises(InvalidInput, match=f"^{field} contains a control character\\.$"):
        check_scope(**{field: f"a{char}b"})


def test_scope_values_keep_other_unicode() -> None:
    assert (
        check_scope("\u00e5lice \u7528\u6237", "agent\u00a0\u00a0x", "run-\U0001f600").user_id
        == "\u00e5lice \u7528\u6237"
    )
