"""Java objects used from several threads at once: every call runs on the instance it was made on.

pyjnius binds a method to its instance by storing the instance in one method object shared by every
instance of the class; a thread that looks the method up, then lets another thread run before calling it
(here: while its argument, another Java call, runs without the GIL), can call it on the other thread's
instance. Two versions of one index searched at once during a reload answered with each other's BM25
hits that way. :mod:`ranker.java` hands out proxies that look up and call under one lock.
"""

from __future__ import annotations

import threading

import pytest

from ranker.java import JavaProxy, autoclass, cast

pytestmark = pytest.mark.java

CALLS = 20_000  # per thread; unguarded pyjnius called the wrong instance about once in ten calls here


def test_two_threads_calling_one_method_on_two_instances_each_get_their_own():
    builder = autoclass("java.lang.StringBuilder")
    wrong = {"a": 0, "b": 0}

    def call(letter: str) -> None:
        mine, other = builder(letter * 50), builder("x" * 10)
        try:
            for _ in range(CALLS):
                if mine.charAt(other.length() - 1) != letter:  # the argument is a Java call that drops the GIL
                    wrong[letter] += 1
        finally:
            import jnius

            jnius.detach()

    threads = [threading.Thread(target=call, args=(letter,)) for letter in wrong]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == {"a": 0, "b": 0}


def test_proxies_pass_through_calls_fields_lists_and_casts():
    array_list = autoclass("java.util.ArrayList")()
    array_list.add(autoclass("java.lang.StringBuilder")("x"))  # a proxy as an argument reaches Java as its object
    items = array_list.toArray()
    assert isinstance(items, list) and isinstance(items[0], JavaProxy) and items[0].toString() == "x"
    assert len(array_list) == 1 and [item.toString() for item in array_list] == ["x"]  # a Java Iterable
    assert autoclass("java.lang.Integer").MAX_VALUE == 2**31 - 1  # a static field
    args = autoclass("io.anserini.search.SearchCollection$Args")()
    args.hits = 17  # an instance field, set
    assert args.hits == 17
    collection = cast("java.util.Collection", array_list)
    assert collection.size() == 1 and isinstance(collection, JavaProxy)
