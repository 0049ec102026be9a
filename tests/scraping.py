"""Reading `/metrics` as Prometheus would: one sample's value out of the exposition text."""

from collections.abc import Callable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families


def sample(exposition: str, name: str, **labels: str) -> float:
    """The value of the sample `name` with exactly these labels; 0 when it is not (yet) there,
    as for a counter no request has touched."""
    for family in text_string_to_metric_families(exposition):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    return 0.0


def scrape(client: Any, **headers: str) -> str:
    """The metrics text, through a test client or httpx (anything with `.get`)."""
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    text: str = response.text
    return text


def growth(before: str, after: str) -> Callable[..., float]:
    """How much a sample grew between two scrapes: `growth(before, after)(name, **labels)`."""

    def grew(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    return grew
