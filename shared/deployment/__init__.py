"""Which model is in use and how it got there: the registry (deploy, rollback,
auto-deploy), the model in use in each process (hot reload), model comparison, and the
one audit recorder of DeploymentEvent rows."""
