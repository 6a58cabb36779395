"""Operations that drive whole stores, beside the facade: ``migrate`` store to store
(``migrate.py``, its batch log in ``batch_log.py``) and from legacy stores (``legacy.py``
with the adapters in ``sources/``, ``mapping.py``, ``validate.py``, ``report.py``).

They sit above the engine and the stores and are called by the surfaces (the CLI, later the
service's admin routes); nothing below them imports them.
"""
