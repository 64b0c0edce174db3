"""`python -m bench export`: a measured cell's artifact in deployable form, with its manifest and a Triton layout.

``build`` rebuilds the cell (from a run's row, or afresh), ``deployable`` writes the
artifact as a deployment loads it, ``manifest`` says what it is and what it measured,
``triton`` writes and reads Triton's model configuration, ``bundle`` puts them together
in the output folder.
"""
