"""rating sits in the domain, above routing: pages and transports import it, never the reverse."""

from __future__ import annotations

from tests import test_layers


def test_rating_imports_only_the_domain_below_it(monkeypatch):
    layers = [*test_layers.LAYERS[:3], {"rating"}, *test_layers.LAYERS[3:]]
    monkeypatch.setattr(test_layers, "LAYERS", layers)
    monkeypatch.setattr(test_layers, "PACKAGES", set().union(*layers))
    graph = test_layers.graph()
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        for target in targets
        if test_layers.layer(target) < test_layers.layer(module)
    )
    assert wrong == []
    assert any(name.startswith("rating.") for name in graph)
