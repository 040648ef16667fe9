import pytest

from bastion.taxonomy import HAZARD_CODES, PREPAREDNESS_CATEGORIES, load_taxonomy


def test_codes_are_stable_and_complete():
    tax = load_taxonomy()
    assert tax.codes == HAZARD_CODES + ("attack",)
    assert tax.hazard_codes == HAZARD_CODES


def test_every_category_is_documented():
    for c in load_taxonomy().categories:
        assert c.name and len(c.description) > 20
        assert c.in_scope and c.out_of_scope, c.code
        assert c.preparedness is None or c.preparedness in PREPAREDNESS_CATEGORIES


def test_preparedness_mapping():
    tax = load_taxonomy()
    assert tax.preparedness_of("S9") == "cbrn"
    assert tax.preparedness_of("S2") == "cybersecurity"
    assert tax.preparedness_of("S13") == "persuasion"
    assert tax.preparedness_of("S14") == "model_autonomy"
    assert tax.preparedness_of("S1") is None
    assert "S9" in tax.codes_for_preparedness("cbrn")
    assert set(tax.preparedness_names) == set(PREPAREDNESS_CATEGORIES)


def test_unknown_code_is_a_clear_error():
    with pytest.raises(KeyError, match="unknown hazard category 'S99'"):
        load_taxonomy().get("S99")
