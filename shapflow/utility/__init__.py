"""v(S): the study of a use case (stages, endpoints, coalitions) per model family."""
