"""The demo orchestrator: chains the stages (data, distill, export, bench) on the embedded default. It sits
above them; nothing in a stage imports it."""
