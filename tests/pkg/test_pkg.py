"""PKG: IRIs, snapshots, canonical JSON-LD through rdflib with the vendored context, errors naming the input."""

from __future__ import annotations

import json
import socket

import pytest
from rdflib import RDF, Literal, URIRef

from ffmrec.errors import DataError
from ffmrec.pkg.graph import (
    FFM,
    MOVIE_NS,
    PKG,
    SCHEMA,
    PKGHistory,
    Preference,
    dumps,
    movie_iri,
    pkg_document,
    pkg_from_jsonld,
    pkg_to_graph,
    user_iri,
)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """The vendored context must make every JSON-LD operation offline."""
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_iris_come_from_redial_ids_not_titles():
    assert movie_iri("111776") == MOVIE_NS + "111776"
    assert user_iri(956) == "https://w3id.org/ffmrec/redial/user/956"


def test_snapshot_is_the_pkg_before_the_turn_and_follows_priorities():
    history = PKGHistory(7, [Preference(0, "1", "suggested"), Preference(2, "1", "liked"), Preference(3, "1", "suggested"),
                             Preference(3, "2", "seen"), Preference(5, "2", "notSeen")])
    assert history.snapshot(0).relations == {}
    assert history.snapshot(1).relations == {"1": "suggested"}
    assert history.snapshot(2).relations == {"1": "suggested"}  # the turn's own statement is not yet known
    assert history.snapshot(3).relations == {"1": "liked"}
    assert history.snapshot(4).relations == {"1": "liked", "2": "seen"}  # suggested never overrides liked
    assert history.final().relations == {"1": "liked", "2": "notSeen"}  # equal priority replaces


def test_document_is_canonical_whatever_the_insertion_order(catalog):
    a = PKG(5, {"3": "liked", "1": "disliked", "2": "liked"})
    b = PKG(5, {"2": "liked", "1": "disliked", "3": "liked"})
    text = dumps(pkg_document(a, catalog, with_context=False))
    assert text == dumps(pkg_document(b, catalog, with_context=False))
    doc = json.loads(text)
    assert list(doc) == ["@id", "@type", "liked", "disliked"]
    assert [m["@id"] for m in doc["liked"]] == ["movie:2", "movie:3"]
    assert doc["liked"][0] == {"@id": "movie:2", "name": "Beta", "datePublished": "2002", "genre": ["comedy"],
                               "director": ["Dee One"]}
    assert ", " not in text and ": " not in text  # compact separators


def test_rdflib_reads_schema_org_types_and_our_relations(catalog):
    graph = pkg_to_graph(PKG(5, {"1": "liked", "8": "suggested"}), catalog)
    user, alpha = URIRef(user_iri(5)), URIRef(movie_iri("1"))
    assert (user, RDF.type, URIRef(SCHEMA + "Person")) in graph
    assert (alpha, RDF.type, URIRef(SCHEMA + "Movie")) in graph
    assert (alpha, URIRef(SCHEMA + "name"), Literal("Alpha")) in graph
    assert (alpha, URIRef(SCHEMA + "datePublished"), Literal("2001")) in graph
    assert (alpha, URIRef(SCHEMA + "actor"), Literal("Ann Actor")) in graph
    assert (user, URIRef(FFM + "liked"), alpha) in graph
    assert (user, URIRef(FFM + "suggested"), URIRef(movie_iri("8"))) in graph


@pytest.mark.parametrize("with_context", [True, False])
def test_jsonld_round_trip(catalog, with_context):
    pkg = PKG(5, {"1": "liked", "3": "disliked", "4": "seen", "5": "notSeen", "8": "suggested"})
    back = pkg_from_jsonld(dumps(pkg_document(pkg, catalog, with_context=with_context)), catalog, "pkg.json")
    assert back == pkg


def test_history_round_trip(catalog):
    history = PKGHistory(9, [Preference(0, "1", "suggested", "10"), Preference(0, "2", "liked", "10"),
                             Preference(4, "1", "liked", "11")])
    back = PKGHistory.from_jsonld(history.to_jsonld(), catalog, "history.jsonld")
    assert back.user_id == 9 and back.events == history.events
    assert back.snapshot(4) == history.snapshot(4)


@pytest.mark.parametrize("text, match", [
    ('{"@id": "user:5", ', r"user 5 on device: not valid JSON-LD \(JSON error"),
    ("[1, 2]", r"user 5 on device: a PKG document must be a JSON-LD object"),
    ('{"@id": "user:5", "@type": "Thing"}', r"user 5 on device: a PKG must hold exactly one schema:Person, found 0"),
    ('{"@id": "user:5", "@type": "Person", "liked": [{"@id": "movie:999"}]}',
     r"user 5 on device: unknown movie https://w3id.org/ffmrec/redial/movie/999"),
    ('{"@id": "user:5", "@type": "Person", "liked": [{"@id": "https://example.org/Alpha"}]}', r"unknown movie"),
    ('{"@id": "user:abc", "@type": "Person"}', r"is not https://w3id.org/ffmrec/redial/user/<worker id>"),
])
def test_malformed_pkg_names_the_input(catalog, text, match):
    with pytest.raises(DataError, match=match):
        pkg_from_jsonld(text, catalog, "user 5 on device")


def test_unknown_movie_in_catalogue_lookup_names_it(catalog):
    with pytest.raises(DataError, match=r"movie id '42' is not in the ReDial movie catalogue"):
        pkg_document(PKG(1, {"42": "liked"}), catalog)
    with pytest.raises(DataError, match="relation 'loved' is unknown"):
        Preference(0, "1", "loved")
