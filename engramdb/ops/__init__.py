"""Operations that drive whole stores (migrate, the batch log), beside the facade.

They sit above the engine and the stores and are called by the surfaces (the CLI, later the
service's admin routes); nothing below them imports them.
"""
