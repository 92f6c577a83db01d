"""The racer's tracker. So far: the simulated rider (simulate.py); see the project's issues."""
