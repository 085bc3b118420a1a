"""The Chaos Monkey Engine: plans chaos attacks and runs them at their time."""
