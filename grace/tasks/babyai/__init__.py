"""BabyAI levels (minigrid) as grace tasks: the shared 155-wide observation vector (encoding)
and the levels with their bot expert (levels). minigrid is imported only when an env is made."""
