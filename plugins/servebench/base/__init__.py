"""What every stage stands on: where things live (paths), CPU sets (placement), processes that never outlive
the harness (teardown) and the harness's small HTTP client. Imports nothing of servebench."""
