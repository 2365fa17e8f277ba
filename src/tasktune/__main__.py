from tasktune.cli import main

raise SystemExit(main())
