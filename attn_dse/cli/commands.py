"""Commands beyond `hw`: registered on the group by import."""
