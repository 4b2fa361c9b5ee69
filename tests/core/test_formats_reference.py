"""docs/formats.md is generated from the models; it must say what validate checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from connc.schema import models, reference

ROOT = Path(__file__).resolve().parents[2]


def test_committed_page_is_current() -> None:
    committed = (ROOT / "docs" / "formats.md").read_text(encoding="utf-8")
    assert committed == reference.render(), (
        "docs/formats.md is stale: run python -m connc.schema.reference docs/formats.md")


def _all_models() -> list[type[BaseModel]]:
    found = [model for _t, _a, model in reference._DOCUMENTS]
    for _title, _about, model in reference._DOCUMENTS:
        found += [nested for _name, nested in reference._nested(model)]
    found += list(models.spec_models().values()) + list(models.CREDENTIALS.values())
    return list(dict.fromkeys(found))


@pytest.mark.parametrize("model", _all_models(), ids=lambda m: m.__name__)
def test_every_field_is_documented(model: type[BaseModel]) -> None:
    undocumented = [name for name, field in model.model_fields.items() if not field.description]
    assert not undocumented, f"{model.__name__}: add a docstring under {undocumented}"


def test_an_undocumented_field_fails_the_page() -> None:
    class Bare(BaseModel):
        name: str

    with pytest.raises(ValueError, match="Bare.name has no docstring"):
        reference._table(Bare)


def test_every_connection_type_has_its_section() -> None:
    page = reference.render()
    for connection_type in models.spec_models():
        assert f"#### `{connection_type}`" in page
