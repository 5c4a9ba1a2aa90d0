"""Distillation data and the staged recipes: teachers sample traces (generate), rejection keeps the good ones."""
