"""KG-path explanations on a hand-built tiny graph."""

from ffmrec.data.redial_kg import Movie, MovieCatalog
from ffmrec.pkg.explain import NO_LINK, KGLink, find_link, link_words

CATALOG = MovieCatalog([
    Movie("1", "Alien", "1979", ("horror", "sci-fi"), ("Ridley Scott",), ("Sigourney Weaver",)),
    Movie("2", "Gladiator", "2000", ("action", "drama"), ("Ridley Scott",), ("Russell Crowe",)),
    Movie("3", "Aliens", "1986", ("sci-fi",), ("James Cameron",), ("Sigourney Weaver",)),
    Movie("4", "Heat", "1995", ("crime", "drama"), ("Michael Mann",), ()),
    Movie("5", "Amelie", "2001", ("romance",), ("Jean-Pierre Jeunet",), ()),
])


def test_director_link_in_words():
    link = find_link(["1"], "2", CATALOG)
    assert link == KGLink("1", "director", "Ridley Scott", "2")
    assert link_words(link, CATALOG) == ("because you liked Alien (1979), which shares the director Ridley Scott with "
                                         "Gladiator (2000)")


def test_director_before_actor_before_genre_and_liked_order():
    assert find_link(["1"], "3", CATALOG) == KGLink("1", "actor", "Sigourney Weaver", "3")
    assert find_link(["4", "1"], "2", CATALOG) == KGLink("1", "director", "Ridley Scott", "2")  # director beats genre
    assert find_link(["4"], "2", CATALOG) == KGLink("4", "genre", "drama", "2")


def test_no_link():
    assert find_link(["1", "2"], "5", CATALOG) is None
    assert find_link([], "2", CATALOG) is None
    assert find_link(["2"], "2", CATALOG) is None  # a movie does not explain itself
    assert link_words(None, CATALOG) == NO_LINK
