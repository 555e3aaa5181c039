"""What produces a dictionary: DL-FISTA, Softplus-Adam, LISTA (a learned encoder for a dictionary)."""

from dictlab.learners.lista import Lista, ListaConfig, default_weight_lr

__all__ = ["Lista", "ListaConfig", "default_weight_lr"]
