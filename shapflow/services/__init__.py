"""Long-lived processes and their lifetimes: the tracking server (MLflow on a private PostgreSQL cluster,
``server``) and how shapflow's processes stop with their parent, on signals, and reap what they started
(``lifetime``). Below execution and tracking, which use them; no MLflow import (the server is a subprocess)."""
