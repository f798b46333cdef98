#!/usr/bin/python3
"""The demo's sample of repositories, for the registry simulator and for
registry_migration.repositories: most migrate on the first try, and some
show what the control loop is for.

    demo_sample.py SIMULATOR_URL > repositories.csv   (path,plan for COPY)
"""
import json
import random
import sys
import urllib.request

random.seed(2022)


def repository(path, **behaviour):
    entry = {"path": path, "pre_import_seconds": round(random.uniform(0.3, 1.5), 2),
             "import_seconds": round(random.uniform(0.1, 0.5), 2), "tags": random.randint(1, 40)}
    entry.update(behaviour)
    return entry


def sample():
    groups = ["gitlab-org", "acme", "data-team", "infra", "mobile"]
    repos = [repository(f"{random.choice(groups)}/project-{i}/image") for i in range(260)]
    repos += [repository(f"acme/big-{i}/image", tags=150 + i) for i in range(8)]
    repos += [repository(f"data-team/flaky-{i}/image", pre_import_outcomes=["failed", "complete"])
              for i in range(12)]
    repos += [repository(f"infra/flaky-import-{i}/image", import_outcomes=["failed", "complete"])
              for i in range(5)]
    repos += [repository(f"mobile/stuck-{i}/image", pre_import_outcomes=["hang", "complete"])
              for i in range(6)]
    repos += [repository(f"acme/canceled-{i}/image", pre_import_outcomes=["canceled", "complete"])
              for i in range(3)]
    repos += [repository(f"gitlab-org/native-{i}/image", native=True) for i in range(2)]
    repos += [repository(f"infra/gone-{i}/image", exists=False) for i in range(2)]
    repos += [repository("blocked-customer/app/image")]
    random.shuffle(repos)
    return repos


def main():
    repos = sample()
    request = urllib.request.Request(sys.argv[1] + "/_sim/repositories", method="POST",
                                     data=json.dumps({"repositories": repos}).encode())
    urllib.request.urlopen(request).read()
    for entry in repos:
        print("%s,%s" % (entry["path"], random.choice(["free", "premium", "ultimate"])))


if __name__ == "__main__":
    main()
