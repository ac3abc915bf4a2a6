# The machine and software environment of this workflow run (shared by every meta.json).


rule environment:
    output:
        str(LAYOUT.environment_json),
    log:
        results("logs", "environment.log"),
    script:
        "../scripts/environment.py"
