"""The rules: lifecycle, models, errors, authority and policy, planning, config."""
