"""The review and operations web app (`newsflow web`): server-rendered pages for reviewers
labelling sampled predictions and for on-call engineers reading drift reports."""
