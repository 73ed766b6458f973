"""Metrics of how well a fitted model recovered the true mechanism."""

from ppzoo.metrics.identifiability import amari_distance, match_components, mcc

__all__ = ["mcc", "amari_distance", "match_components"]
