"""Scoring a request: loaded models and their slots, parsing and lag assembly of rows, input
validity, the row status rules, the batcher, the answers.
"""
