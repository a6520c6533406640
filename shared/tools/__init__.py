"""The tools of step 5 (calculator, clock, units, documents, shop database), their prompt and few-shot examples."""
