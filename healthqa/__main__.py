from healthqa.pipelines.cli import main

main()
