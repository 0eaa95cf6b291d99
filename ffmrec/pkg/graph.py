"""Personal knowledge graphs (PKG): what one user has said about movies, as JSON-LD with schema.org types.

A PKG holds one ``schema:Person`` (the user, ``user:<ReDial worker id>``) and, for each movie the user has talked about,
one preference relation of our namespace ``ffm:`` (``https://w3id.org/ffmrec/pkg#``): ``liked``, ``disliked``,
``seen``, ``notSeen`` or ``suggested``. Movies are ``schema:Movie`` nodes with stable IRIs from their ReDial movie id
(``movie:111776``, never the title), with ``schema:name``, ``schema:datePublished``, ``schema:genre`` and, where the
CFCRS movie KG has them, ``schema:director`` and ``schema:actor`` (names as text).

The PKG *evolves*: :class:`PKGHistory` keeps the user's preference events, each stamped with the turn (an index over
the user's whole chronological history) at which it was stated; :meth:`PKGHistory.snapshot` gives the PKG as it was
before any turn, so a prompt can only ever see what the user had said before it. A movie carries one relation at a
time; a new statement replaces an older one of lower or equal priority (liked/disliked 3 > seen/notSeen 2 >
suggested 1), the rule of FedTREK-LM (arXiv 2603.13264).

JSON-LD is read and written with rdflib and a *vendored* JSON-LD context (``context.jsonld`` in this package: a minimal
subset of schema.org covering exactly the terms we use, plus our namespace), so nothing is ever fetched from the
network. :func:`pkg_document` writes a PKG canonically (fixed key order, relations in a fixed order, movies by numeric
id, compact separators), so equal PKGs serialize to equal bytes.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources

from ffmrec.data.redial import MovieAnswers
from ffmrec.data.redial_kg import MovieCatalog
from ffmrec.errors import DataError

SCHEMA = "https://schema.org/"
FFM = "https://w3id.org/ffmrec/pkg#"
MOVIE_NS = "https://w3id.org/ffmrec/redial/movie/"
USER_NS = "https://w3id.org/ffmrec/redial/user/"
#: The preference relations, in the canonical order of serialization.
RELATIONS = ("liked", "disliked", "seen", "notSeen", "suggested")
PRIORITY = {"liked": 3, "disliked": 3, "seen": 2, "notSeen": 2, "suggested": 1}
#: Movie properties a serialized PKG may carry, in canonical order.
MOVIE_FIELDS = ("name", "datePublished", "genre", "director", "actor")


@functools.cache
def jsonld_context() -> dict:
    """The vendored JSON-LD context (the value of ``"@context"``)."""
    text = resources.files("ffmrec.pkg").joinpath("context.jsonld").read_text(encoding="utf-8")
    return json.loads(text)["@context"]


def movie_iri(movie_id: str) -> str:
    return f"{MOVIE_NS}{movie_id}"


def user_iri(user_id: int) -> str:
    return f"{USER_NS}{user_id}"


def relation_from_answers(answers: MovieAnswers, by_recommender: bool) -> str | None:
    """The relation a movie mention states: liked/disliked when the user said whether they liked it, else seen/notSeen
    when they said whether they saw it, else ``suggested`` when the recommender brought it up; None otherwise."""
    if answers.liked in (0, 1):
        return "liked" if answers.liked == 1 else "disliked"
    if answers.seen in (0, 1):
        return "seen" if answers.seen == 1 else "notSeen"
    if answers.suggested == 1 and by_recommender:
        return "suggested"
    return None


@dataclass(frozen=True)
class Preference:
    """One statement: at ``turn`` (index in the user's history) the user's relation to ``movie_id`` became
    ``relation``."""

    turn: int
    movie_id: str
    relation: str
    conversation_id: str = ""

    def __post_init__(self) -> None:
        if self.relation not in PRIORITY:
            raise DataError(f"preference relation {self.relation!r} is unknown: use one of {', '.join(RELATIONS)}.")


@dataclass(frozen=True)
class PKG:
    """A PKG snapshot: the user and its one relation per movie (``relations[movie_id]``)."""

    user_id: int
    relations: Mapping[str, str] = field(default_factory=dict)
    #: the turn of each movie's latest statement (a snapshot of a history knows it; a parsed document does not)
    turns: Mapping[str, int] = field(default_factory=dict, compare=False)

    def __contains__(self, movie_id: str) -> bool:
        return movie_id in self.relations

    def __len__(self) -> int:
        return len(self.relations)

    def movies(self, relation: str | None = None) -> list[str]:
        """Movie ids (ascending numeric id), all or those with ``relation``."""
        return sorted((m for m, r in self.relations.items() if relation is None or r == relation), key=int)

    def only(self, movie_ids: Iterable[str]) -> PKG:
        keep = set(movie_ids)
        return PKG(self.user_id, {m: r for m, r in self.relations.items() if m in keep},
                   {m: t for m, t in self.turns.items() if m in keep})

    def without(self, movie_ids: Iterable[str]) -> PKG:
        drop = set(movie_ids)
        return PKG(self.user_id, {m: r for m, r in self.relations.items() if m not in drop},
                   {m: t for m, t in self.turns.items() if m not in drop})


def apply_preference(relations: dict[str, str], movie_id: str, relation: str) -> None:
    """Update ``relations`` in place by the priority rule (a statement replaces one of lower or equal priority)."""
    old = relations.get(movie_id)
    if old is None or PRIORITY[relation] >= PRIORITY[old]:
        relations[movie_id] = relation


class PKGHistory:
    """A user's preference events in turn order; the PKG at any turn."""

    def __init__(self, user_id: int, events: Iterable[Preference] = ()):
        self.user_id = int(user_id)
        self.events = sorted(events, key=lambda e: e.turn)  # stable: statements of one turn keep their order

    def snapshot(self, turn: int) -> PKG:
        """The PKG as it was *before* ``turn``: every event of an earlier turn, none of ``turn`` or later."""
        relations: dict[str, str] = {}
        turns: dict[str, int] = {}
        for e in self.events:
            if e.turn >= turn:
                break
            apply_preference(relations, e.movie_id, e.relation)
            turns[e.movie_id] = e.turn
        return PKG(self.user_id, relations, turns)

    def final(self) -> PKG:
        """The PKG after the last event."""
        return self.snapshot(self.events[-1].turn + 1 if self.events else 0)

    def to_jsonld(self) -> str:
        """The history as a canonical JSON-LD document: the Person and one ``ffm:Preference`` node per event."""
        nodes = [{"@id": f"{user_iri(self.user_id)}#event-{i}", "@type": "Preference", "agent": user_iri(self.user_id),
                  "object": movie_iri(e.movie_id), "relation": e.relation, "turn": e.turn,
                  "conversation": e.conversation_id} for i, e in enumerate(self.events)]
        doc = {"@context": jsonld_context(), "@graph": [{"@id": user_iri(self.user_id), "@type": "Person"}, *nodes]}
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_jsonld(cls, text: str, catalog: MovieCatalog, source: str) -> PKGHistory:
        """Read :meth:`to_jsonld`'s document back through rdflib (DataError naming ``source`` when it is malformed,
        has no Person, or names a movie that is not in the catalogue)."""
        from rdflib import RDF, Literal, URIRef

        graph = parse_jsonld(text, source)
        person = _person(graph, source)
        user_id = _user_id(person, source)
        ffm = lambda name: URIRef(FFM + name)  # noqa: E731
        events = []
        for node in graph.subjects(RDF.type, ffm("Preference")):
            movie = graph.value(node, ffm("object"))
            relation = graph.value(node, ffm("relation"))
            turn = graph.value(node, ffm("turn"))
            if movie is None or relation is None or not isinstance(turn, Literal):
                raise DataError(f"{source}: preference {node} lacks object, relation or turn. Write the PKG history "
                                "with PKGHistory.to_jsonld.")
            name = str(relation).removeprefix(FFM)
            if name not in PRIORITY:
                raise DataError(f"{source}: preference {node} has relation {relation}: use one of "
                                f"{', '.join(FFM + r for r in RELATIONS)}.")
            conversation = graph.value(node, ffm("conversation"))
            events.append((int(turn.toPython()), str(node), Preference(
                int(turn.toPython()), _movie_id(movie, catalog, source), name, str(conversation or ""))))
        events.sort(key=lambda t: (t[0], int(t[1].rsplit("-", 1)[-1]) if t[1].rsplit("-", 1)[-1].isdigit() else 0))
        return cls(user_id, [e for _, _, e in events])


# --- JSON-LD documents of one snapshot ------------------------------------------------------------------------------
def movie_node(movie_id: str, catalog: MovieCatalog, fields: Iterable[str] = MOVIE_FIELDS, compact: bool = True) -> dict:
    """One movie as a JSON-LD node (keys in canonical order; empty properties left out)."""
    m = catalog[movie_id]
    node: dict = {"@id": f"movie:{movie_id}" if compact else movie_iri(movie_id)}
    if not compact:
        node["@type"] = "Movie"
    values = {"name": m.name, "datePublished": m.year, "genre": list(m.genres), "director": list(m.directors),
              "actor": list(m.actors)}
    for key in MOVIE_FIELDS:
        if key in fields and values[key]:
            node[key] = values[key]
    return node


def pkg_document(pkg: PKG, catalog: MovieCatalog, fields: Iterable[str] = MOVIE_FIELDS,
                 with_context: bool = True) -> dict:
    """The snapshot as one JSON-LD node: the Person with a list of movie nodes per relation (canonical order).
    ``with_context=False`` leaves the ``@context`` out and uses compact IRIs (``user:…``, ``movie:…``): the form a
    prompt carries; :func:`parse_jsonld` puts the vendored context back."""
    fields = tuple(fields)
    unknown = [f for f in fields if f not in MOVIE_FIELDS]
    if unknown:
        raise DataError(f"movie field {unknown[0]!r} is unknown: use some of {', '.join(MOVIE_FIELDS)}.")
    doc: dict = {"@context": jsonld_context()} if with_context else {}
    doc["@id"] = f"user:{pkg.user_id}" if not with_context else user_iri(pkg.user_id)
    doc["@type"] = "Person"
    for relation in RELATIONS:
        movies = pkg.movies(relation)
        if movies:
            doc[relation] = [movie_node(m, catalog, fields, compact=not with_context) for m in movies]
    return doc


def dumps(doc: dict) -> str:
    """Canonical compact JSON text (insertion order of the canonical builders, no spaces, UTF-8 kept)."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def parse_jsonld(text: str, source: str):
    """An rdflib Graph of a JSON-LD text (``@context`` missing or given by IRI -> the vendored context; nothing is
    fetched). DataError naming ``source`` if the text is not a JSON-LD object."""
    from rdflib import Graph

    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, TypeError) as exc:
        raise DataError(f"{source}: not valid JSON-LD (JSON error: {exc}). Write PKGs with ffmrec.pkg.") from None
    if not isinstance(doc, dict):
        raise DataError(f"{source}: a PKG document must be a JSON-LD object, got a JSON {type(doc).__name__}. "
                        "Write PKGs with ffmrec.pkg.")
    if not isinstance(doc.get("@context"), dict):
        doc = {**doc, "@context": jsonld_context()}
    graph = Graph()
    try:
        graph.parse(data=json.dumps(doc), format="json-ld")
    except Exception as exc:  # noqa: BLE001 -- rdflib raises many kinds for malformed JSON-LD
        raise DataError(f"{source}: not valid JSON-LD ({type(exc).__name__}: {exc}). Write PKGs with ffmrec.pkg.") from None
    return graph


def pkg_to_graph(pkg: PKG, catalog: MovieCatalog, fields: Iterable[str] = MOVIE_FIELDS):
    """The snapshot as an rdflib Graph (the same triples as its JSON-LD document)."""
    return parse_jsonld(dumps(pkg_document(pkg, catalog, fields)), f"PKG of user {pkg.user_id}")


def pkg_from_jsonld(text: str, catalog: MovieCatalog, source: str) -> PKG:
    """A snapshot from its JSON-LD (full or prompt form); DataError naming ``source`` when it is malformed, has no
    single Person, or names a movie that is not in the catalogue."""
    from rdflib import URIRef

    graph = parse_jsonld(text, source)
    person = _person(graph, source)
    relations: dict[str, str] = {}
    for relation in RELATIONS:
        for movie in graph.objects(person, URIRef(FFM + relation)):
            movie_id = _movie_id(movie, catalog, source)
            if movie_id in relations:
                raise DataError(f"{source}: movie {movie_id} has two relations ({relations[movie_id]}, {relation}); "
                                "a PKG holds one relation per movie.")
            relations[movie_id] = relation
    return PKG(_user_id(person, source), relations)


def _person(graph, source: str):
    from rdflib import RDF, URIRef

    people = sorted(graph.subjects(RDF.type, URIRef(SCHEMA + "Person")))
    if len(people) != 1:
        raise DataError(f"{source}: a PKG must hold exactly one schema:Person, found {len(people)}. "
                        "Write PKGs with ffmrec.pkg.")
    return people[0]


def _user_id(person, source: str) -> int:
    tail = str(person).removeprefix(USER_NS)
    if not str(person).startswith(USER_NS) or not tail.isdigit():
        raise DataError(f"{source}: the Person's IRI {person} is not {USER_NS}<worker id>.")
    return int(tail)


def _movie_id(movie, catalog: MovieCatalog, source: str) -> str:
    movie_id = str(movie).removeprefix(MOVIE_NS)
    if not str(movie).startswith(MOVIE_NS) or movie_id not in catalog:
        raise DataError(f"{source}: unknown movie {movie}: a PKG may only name ReDial movies "
                        f"({MOVIE_NS}<ReDial movie id> of the catalogue).")
    return movie_id
