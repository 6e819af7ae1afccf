"""Hub folders: `export.save_hub_folder` (weights, config with `auto_map`, processor and the model's code files),
`model_card` (the card of each model type, rendered from `templates/`, with `model-index` and citations) and
`publishing` (building the folder with card, licence and citation, and uploading it). Nothing here travels to the
Hub."""

from .export import save_hub_folder

__all__ = ["save_hub_folder"]
