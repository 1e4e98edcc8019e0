"""ScoreLM: scores as text for language models. The score text language is in scorelm.language."""
