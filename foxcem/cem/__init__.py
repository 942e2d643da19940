"""Native torch Contrastive Explanation Method."""
