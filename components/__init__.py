"""KFP components: one folder each (component.py, its logic, README, tests)."""
