"""The project's data: the documents of step 3, the shop database, the evaluation sets and fine-tuning data.

Shipped inside the package as ``shared.data``; found through ``shared.core.files.DATA_DIR``.
"""
