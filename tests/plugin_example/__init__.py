"""The example plugins (a pass, and a runtime with the pass that feeds it) and the runtime example's tests."""
