"""The one registry mechanism every registry uses: duplicates refused, unknown names listed, order kept."""
import pytest

from facegan.errors import FaceganError
from facegan.registry import DuplicateNameError, Registry


def test_a_duplicate_name_is_refused_and_the_first_item_kept():
    registry = Registry("widget")
    first = registry.add("a", 1)
    with pytest.raises(DuplicateNameError, match="a widget named 'a' is already registered"):
        registry.add("a", 2)
    assert first == 1 and registry.get("a") == 1
    assert issubclass(DuplicateNameError, ValueError) and issubclass(DuplicateNameError, FaceganError)


def test_an_unknown_name_is_one_line_listing_the_known_ones_in_order():
    registry = Registry("widget", unknown="unknown widget.kind '{name}' (known: {known})")
    registry.add("zeta", 1)
    registry.add("alpha", 2)
    with pytest.raises(FaceganError, match=r"^unknown widget.kind 'beta' \(known: zeta, alpha\)$"):
        registry.get("beta")
    assert registry.names() == ["zeta", "alpha"] and "zeta" in registry and len(registry) == 2


def test_remove_forgets_and_ignores_unknown_names():
    registry = Registry("widget")
    registry.add("a", 1)
    registry.remove("a")
    registry.remove("never-there")
    assert registry.names() == []
    registry.add("a", 3)  # free again
    assert registry.get("a") == 3


@pytest.mark.parametrize("name", ["", "two words", "a/b", None, 3])
def test_names_are_short_words(name):
    with pytest.raises(ValueError):
        Registry("widget").add(name, 1)


def test_every_facegan_registry_is_a_registry():
    """Architectures, losses, extractors, recognisers and report sections share the mechanism (one duplicate rule)."""
    from facegan.faces import recognisers
    from facegan.metrics import features
    from facegan.models import registry as architectures
    from facegan.report import sections
    from facegan.training import losses

    for table in (architectures._ARCHITECTURES, losses._LOSSES, features._REGISTRY, recognisers._REGISTRY, sections._BUILDERS):
        assert isinstance(table, Registry)
